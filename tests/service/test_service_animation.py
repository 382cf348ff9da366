"""An animated upload is judged by its most offensive-looking frame: a harmless first frame no
longer gets an offensive animation approved (SQLite and PostgreSQL). Animated PNG keeps the
frames' pixels exactly (a GIF palette would blur what the tiny test model tells apart)."""

from __future__ import annotations

import io

from PIL import Image

from photosieve.policy.bands import DecisionPolicy
from photosieve.vision.preprocess import load_image
from service_harness import Service, drawn_photo


def _apng(frames: list[bytes]) -> bytes:
    images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buffer.getvalue()


def test_a_harmless_first_frame_does_not_hide_the_rest(service: Service) -> None:
    ok, bad = drawn_photo(7, shape="circle"), drawn_photo(8, shape="rectangle")
    scorer = service.app.state.moderator.scorer
    s_ok, s_bad = (scorer.score_images([load_image(_apng([p]))])[0].score for p in (ok, bad))
    assert s_ok < s_bad  # the tiny bundle: rectangles offensive, circles ok
    service.set_policy(DecisionPolicy(approve_below=(s_ok + s_bad) / 2))
    client = service.api()
    harmless = service.upload(client, _apng([ok, ok, ok]), "u1")
    hidden = service.upload(client, _apng([ok, ok, bad]), "u2")
    assert harmless.status_code == 201, harmless.text
    assert harmless.json()["decision"] == "approved"
    assert hidden.status_code == 201 and hidden.json()["decision"] == "pending_review"
    assert hidden.json()["score"] > harmless.json()["score"]

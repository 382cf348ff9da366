"""The known-bad bank by PDQ: a banked photo re-uploaded mirrored, turned or re-encoded is
removed at once, a different photo is not; imported hash lists match the same way; photos too
flat for PDQ fall back to the pHash. On SQLite and PostgreSQL, through the HTTP API."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from sqlalchemy import select

from drawing import encode
from live_server import LiveServer
from photosieve.store import hashlist
from photosieve.store.models import KnownBadHash, Upload
from photosieve.vision.pdq import pdq
from service_harness import APPROVE_ALL, REMOVE_ALL, Service


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A drawn photo with structure at several scales (smooth waves, discs, mild noise): what
    PDQ needs for a quality above 50, unlike a flat or pure-noise picture."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    pixels = np.full((h, w, 3), 128.0)
    for c in range(3):
        for _ in range(4):
            fx, fy, phase = *rng.uniform(0.5, 4, 2), rng.uniform(0, 2 * np.pi)
            pixels[..., c] += rng.uniform(20, 50) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    pixels += rng.normal(0, 4, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0, side = rng.integers(0, w * 3 // 4), rng.integers(0, h * 3 // 4), w // 5
        draw.ellipse((x0, y0, x0 + side, y0 + side), fill=tuple(rng.integers(0, 255, 3).tolist()))
    return image


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return encode(image, "JPEG", quality=quality)


def test_a_banked_photo_mirrored_turned_or_reencoded_is_removed(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    original = _photo(1)
    assert pdq(original).quality >= service.settings.pdq_min_quality
    banked = service.upload(api, _jpeg(original)).json()
    assert banked["decision"] == "removed" and banked["reason"] == "model_band"
    service.set_policy(APPROVE_ALL)  # the model would approve every copy: the bank must not
    copies = {
        "mirrored": ImageOps.mirror(original),
        "turned 90°": original.rotate(90, expand=True),
        "upside down": original.rotate(180),
        "re-encoded": Image.open(io.BytesIO(_jpeg(original, 45))),
    }
    removed = [banked["id"]]
    for what, copy in copies.items():
        again = service.upload(api, _jpeg(copy, 70), f"user-{what}").json()
        assert again["decision"] == "removed" and again["reason"] == "hash_match", what
        match = again["hash_match"]
        # The nearest banked copy: the original, or a copy removed (and banked) before it.
        assert match["upload_id"] in removed and match["hash"] == "pdq", what
        assert match["distance"] <= service.settings.pdq_match_distance
        assert again["queued_as"] == "hash_match"  # banked by the model alone: a person checks
        removed.append(again["id"])
    for seed in (2, 3):
        other = service.upload(api, _jpeg(_photo(seed)), "someone").json()
        assert other["decision"] == "approved" and other["hash_match"] is None
    with service.sessions() as session:  # banked with its PDQ hash beside the pHash
        entry = session.scalars(
            select(KnownBadHash).where(KnownBadHash.source_upload_id == banked["id"])
        ).one()
        assert entry.pdq == pdq(Image.open(io.BytesIO(_jpeg(original)))).hex
        assert entry.phash is not None
        upload = session.get(Upload, banked["id"])
        assert upload is not None and upload.pdq == entry.pdq and upload.pdq_quality is not None


def test_an_imported_hash_list_matches_without_a_person(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    listed = _photo(4)
    text = f"pdq,quality,name\n{pdq(listed).hex},{pdq(listed).quality},known.jpg\n"
    with service.sessions() as session:  # as `photosieve bank import` does, beside the service
        parsed = hashlist.parse(io.StringIO(text), min_quality=50)
        hashlist.import_hashes(session, parsed.hashes, list_name="tx.csv")
        session.commit()
    again = service.upload(api, _jpeg(ImageOps.mirror(listed))).json()
    assert again["decision"] == "removed" and again["reason"] == "hash_match"
    assert again["hash_match"]["upload_id"] is None and again["hash_match"]["hash"] == "pdq"
    assert again["queued_as"] is None  # imported lists are confirmed by default
    assert service.upload(api, _jpeg(_photo(5))).json()["decision"] == "approved"


def test_a_photo_too_flat_for_pdq_is_matched_by_its_phash(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    flat = Image.new("RGB", (320, 240), (90, 120, 150))
    ImageDraw.Draw(flat).rectangle((0, 0, 159, 239), fill=(100, 130, 160))
    assert pdq(flat).quality < service.settings.pdq_min_quality
    banked = service.upload(api, encode(flat, "PNG")).json()
    service.set_policy(APPROVE_ALL)
    again = service.upload(api, _jpeg(flat, 60)).json()
    assert again["reason"] == "hash_match" and again["hash_match"]["hash"] == "phash"
    assert again["hash_match"]["upload_id"] == banked["id"]
    with service.sessions() as session:
        entry = session.scalars(
            select(KnownBadHash).where(KnownBadHash.source_upload_id == banked["id"])
        ).one()
        assert entry.pdq is None and entry.phash is not None  # not banked by PDQ


def test_ok_on_a_match_of_an_unconfirmed_imported_hash_switches_it_off(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    listed = _photo(6)
    with service.sessions() as session:  # `photosieve bank import --unconfirmed`
        entry = hashlist.ListedHash(pdq(listed).hex, pdq(listed).quality, "maybe.jpg")
        hashlist.import_hashes(session, [entry], list_name="tx.csv", confirmed=False)
        session.commit()
    first = service.upload(api, _jpeg(listed.rotate(90, expand=True))).json()
    assert first["reason"] == "hash_match" and first["queued_as"] == "hash_match"
    reviewer = service.reviewer("rita")
    (item,) = reviewer.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    decided = reviewer.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
    assert decided.status_code == 200, decided.text
    with service.sessions() as session:
        imported = session.scalars(
            select(KnownBadHash).where(KnownBadHash.source_list == "maybe.jpg")
        ).one()
        assert imported.active is False
    assert service.upload(api, _jpeg(listed)).json()["decision"] == "approved"


@pytest.mark.slow
def test_a_list_imported_by_another_process_matches_on_the_live_server(
    service: Service, tmp_path: Path
) -> None:
    """`photosieve bank import` in its own process, beside uvicorn serving the app: the running
    service's index picks the list up at its next upload; `bank export` writes it back."""
    service.set_policy(APPROVE_ALL)
    listed = _photo(7)
    hash_list = tmp_path / "tx.csv"
    hash_list.write_text(f"{pdq(listed).hex},{pdq(listed).quality},known.jpg\n", "utf-8")
    env = {
        **os.environ,
        "PHOTOSIEVE_WORKDIR": str(service.settings.workdir),
        "PHOTOSIEVE_DATABASE_URL": service.settings.resolved_database_url,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    with LiveServer(service.app) as server, httpx.Client(base_url=server.url) as client:
        client.headers["Authorization"] = f"Bearer {service.api_key}"

        def post(photo: Image.Image) -> dict[str, object]:
            files = {"image": ("a.jpg", _jpeg(photo), "image/jpeg")}
            response = client.post("/v1/uploads", files=files, data={"user_id": "u"})
            assert response.status_code == 201, response.text
            return dict(response.json())

        assert post(ImageOps.mirror(listed))["decision"] == "approved"  # not banked yet
        imported = subprocess.run(
            [sys.executable, "-m", "photosieve", "bank", "import", str(hash_list)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        assert "banked 1 PDQ hashes" in imported.stdout
        again = post(ImageOps.mirror(listed))
        assert again["decision"] == "removed" and again["reason"] == "hash_match"
        assert post(_photo(8))["decision"] == "approved"
    exported = subprocess.run(
        [sys.executable, "-m", "photosieve", "bank", "export", "-"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert f"{pdq(listed).hex},{pdq(listed).quality},known.jpg" in exported.stdout.splitlines()

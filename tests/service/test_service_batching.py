"""Micro-batching of uploads (`service.batching`): concurrent uploads share one model call of the
real tiny bundle, each gets the score it would get alone, a failed model call fails every
request of its batch, a full queue answers a typed 503 with Retry-After, and a lone upload is
not held back by the batching window.

A `GatedScorer` wraps the real scorer and holds the first model call until the test lets it go,
so the uploads that arrive meanwhile are known to wait together (no timing luck needed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

from photosieve.records import sha256_bytes
from photosieve.service.batching import MicroBatcher, ScoringBusy
from photosieve.store import uploads
from photosieve.vision.preprocess import load_image
from service_harness import REVIEW_ALL, Service, drawn_photo, make_scorer


class GatedScorer:
    """The real scorer; its first `score_images` call waits for `release`; records batch sizes."""

    def __init__(self, scorer: Any, *, fail: bool = False) -> None:
        self.scorer = scorer
        self.bundle = scorer.bundle
        self.embedder = scorer.embedder
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []

    def score_images(self, images: Sequence[Image.Image]) -> Any:
        self.batches.append(len(images))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(30), "the test never released the first batch"
        if self.fail:
            raise RuntimeError("onnxruntime fell over")
        return self.scorer.score_images(images)


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def real_scorer(tiny_bundle: Any, embedder: Any) -> Any:
    return make_scorer(tiny_bundle, embedder, REVIEW_ALL)


def _photos(n: int, first_seed: int = 300) -> list[Image.Image]:
    shapes = ("rectangle", "circle")
    return [load_image(drawn_photo(first_seed + i, shape=shapes[i % 2])) for i in range(n)]


def test_queued_requests_share_one_call_and_get_their_own_scores(real_scorer: Any) -> None:
    gated = GatedScorer(real_scorer)
    batcher = MicroBatcher(batch_max=32, window_ms=0, queue_max=16)
    photos = _photos(8)
    # One request holds the model; five more (one an animation of three frames) queue behind.
    first = batcher.submit(gated, photos[:1])
    assert gated.entered.wait(20)
    requests = [photos[1:2], photos[2:5], photos[5:6], photos[6:7], photos[7:8]]
    futures = [batcher.submit(gated, frames) for frames in requests]
    assert batcher.waiting() == 5
    gated.release.set()
    results = [first.result(20)] + [f.result(20) for f in futures]
    batcher.close()
    assert gated.batches == [1, 7]  # the five queued requests (7 images) in one model call
    assert batcher.stats.largest_batch == 7 and batcher.stats.batches == 2
    alone = [real_scorer.score_images([photo])[0].score for photo in photos]
    got = [s.score for frames in results for s in frames]
    assert [len(r) for r in results] == [1, 1, 3, 1, 1, 1]
    assert got == pytest.approx(alone, abs=1e-5)
    assert len(set(round(s, 4) for s in alone)) > 1  # distinct photos, distinct scores


def test_batches_are_bounded_by_batch_max(real_scorer: Any) -> None:
    gated = GatedScorer(real_scorer)
    batcher = MicroBatcher(batch_max=3, window_ms=0, queue_max=16)
    photos = _photos(7)
    futures = [batcher.submit(gated, photos[:1])]
    assert gated.entered.wait(20)
    futures += [batcher.submit(gated, [photo]) for photo in photos[1:]]
    gated.release.set()
    for future in futures:
        future.result(20)
    batcher.close()
    assert gated.batches == [1, 3, 3]


def test_a_failed_model_call_fails_every_request_of_its_batch(real_scorer: Any) -> None:
    gated = GatedScorer(real_scorer, fail=True)
    batcher = MicroBatcher(batch_max=32, window_ms=0, queue_max=16)
    photos = _photos(4)
    first = batcher.submit(gated, photos[:1])
    assert gated.entered.wait(20)
    queued = [batcher.submit(gated, [photo]) for photo in photos[1:]]
    gated.release.set()
    for future in [first, *queued]:
        with pytest.raises(RuntimeError, match="onnxruntime fell over"):
            future.result(20)
    gated.fail = False  # the scoring thread survived: the next request is scored
    assert len(batcher.score(gated, photos[:1])) == 1
    batcher.close()


def test_a_full_queue_refuses_at_once_and_close_drains_it(real_scorer: Any) -> None:
    gated = GatedScorer(real_scorer)
    batcher = MicroBatcher(batch_max=32, window_ms=0, queue_max=2)
    photos = _photos(4)
    running = batcher.submit(gated, photos[:1])
    assert gated.entered.wait(20)
    queued = [batcher.submit(gated, [photo]) for photo in photos[1:3]]
    with pytest.raises(ScoringBusy, match="already waiting"):
        batcher.submit(gated, photos[3:])
    closing = threading.Thread(target=batcher.close)
    closing.start()
    _wait_for(lambda: batcher.closed)
    with pytest.raises(ScoringBusy, match="shutting down"):
        batcher.submit(gated, photos[3:])
    gated.release.set()
    closing.join(20)
    assert not closing.is_alive()
    assert all(len(f.result(0)) == 1 for f in [running, *queued])  # nothing queued was lost


def test_an_idle_request_does_not_wait_for_the_window(real_scorer: Any) -> None:
    batcher = MicroBatcher(batch_max=32, window_ms=2000, queue_max=16)
    photo = _photos(1)
    batcher.score(real_scorer, photo)  # warm-up
    started = time.perf_counter()
    for _ in range(3):
        batcher.score(real_scorer, photo)
    assert (time.perf_counter() - started) / 3 < 0.5  # far below the 2 s window
    batcher.close()


def test_under_load_the_window_lets_the_batch_fill(real_scorer: Any) -> None:
    gated = GatedScorer(real_scorer)
    batcher = MicroBatcher(batch_max=4, window_ms=2000, queue_max=16)
    photos = _photos(7)
    first = batcher.submit(gated, photos[:1])
    assert gated.entered.wait(20)
    batch = [batcher.submit(gated, [photo]) for photo in photos[1:3]]
    gated.release.set()
    for future in [first, *batch]:
        future.result(20)  # batches [1], [2]: the last one combined requests
    # Under load now: a request is held (up to 2 s) until the batch fills to batch_max.
    late = [batcher.submit(gated, [photos[3]])]
    time.sleep(0.2)
    assert not late[0].done()
    late += [batcher.submit(gated, [photo]) for photo in photos[4:7]]
    for future in late:
        future.result(20)
    batcher.close()
    assert gated.batches == [1, 2, 4]


def _post(client: Any, photo: bytes, user: str) -> Any:
    return client.post(
        "/v1/uploads", files={"image": ("a.jpg", photo, "image/jpeg")}, data={"user_id": user}
    )


def test_concurrent_uploads_are_scored_together(service: Service) -> None:
    """Over the real app and database: 6 concurrent uploads, the model called in batches."""
    scorer = service.app.state.moderator.scorer
    gated = GatedScorer(scorer)
    service.app.state.moderator.scorer = gated
    batcher: MicroBatcher = service.app.state.batcher
    batcher.batch_max = 8  # room for the five waiting uploads (the default is 4 a thread)
    photos = [drawn_photo(400 + i, shape=("rectangle", "circle")[i % 2]) for i in range(6)]
    client = service.api()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(_post, client, photos[0], "u0")
        assert gated.entered.wait(30)
        rest = [pool.submit(_post, client, p, f"u{i}") for i, p in enumerate(photos[1:], 1)]
        _wait_for(lambda: batcher.waiting() == 5)
        gated.release.set()
        responses = [first.result(30)] + [f.result(30) for f in rest]
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    assert gated.batches == [1, 5]
    assert len({r.json()["id"] for r in responses}) == 6
    alone = [scorer.score_images([load_image(p)])[0].score for p in photos]
    assert [r.json()["score"] for r in responses] == pytest.approx(alone, abs=1e-5)
    metrics = client.get("/metrics").text
    for line in ("batches_total 2", "images_total 6", "requests_total 6", "waiting 0"):
        assert f"photosieve_scoring_{line}\n" in metrics


def test_a_full_scoring_queue_is_a_typed_503(service: Service) -> None:
    gated = GatedScorer(service.app.state.moderator.scorer)
    service.app.state.moderator.scorer = gated
    batcher: MicroBatcher = service.app.state.batcher
    batcher.queue_max = 1
    client = service.api()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_post, client, drawn_photo(500), "u0")
        assert gated.entered.wait(30)
        queued = pool.submit(_post, client, drawn_photo(501), "u1")
        _wait_for(lambda: batcher.waiting() == 1)
        refused = _post(client, drawn_photo(502), "u2")
        gated.release.set()
        assert running.result(30).status_code == 201
        assert queued.result(30).status_code == 201
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["detail"]["reason"] == "busy"
    assert "waiting to be scored" in refused.json()["detail"]["message"]
    with service.sessions() as session:  # the refused upload left no row
        assert uploads.exists_with_sha256(session, sha256_bytes(drawn_photo(500)))
        assert not uploads.exists_with_sha256(session, sha256_bytes(drawn_photo(502)))


def test_the_lifespan_stops_the_scoring_thread(service: Service) -> None:
    from fastapi.testclient import TestClient

    batcher: MicroBatcher = service.app.state.batcher
    with TestClient(service.app) as client:  # runs the app's lifespan
        client.headers["Authorization"] = f"Bearer {service.api_key}"
        assert _post(client, drawn_photo(510), "u1").status_code == 201
        assert batcher.running
    assert batcher.closed and not batcher.running

"""Micro-batching of the service's scoring: concurrent uploads share one model call.

The backbone scores a batch of 32 photos several times faster per photo than one at a time, but
each upload brings one photo (a few frames for an animation). `MicroBatcher` closes the gap:
request threads decode their upload and `submit` its frames; one scoring thread takes what is
waiting — up to `batch_max` images — scores it in a single `score_images` call and hands every
request its own scores through a future.

It is adaptive, so a lone upload is never held back: the scoring thread dispatches at once when
the model is idle, and whatever accumulates while it is busy goes into the next batch. Only
after a batch that combined several requests (the service is under load) does it also wait, at
most `window_ms` after the oldest waiting request, for the batch to fill. A failed model call
fails every request of its batch with the same exception. At most `queue_max` requests wait:
one more gets `ScoringBusy` at once (the route answers 503 with Retry-After) instead of a
growing queue. `close` scores what is already queued, then stops the thread (the app's
lifespan calls it); a request after that gets `ScoringBusy` too.

Inference runs only on the scoring thread, so onnxruntime's intra-op threads are the only
threads the model uses (`Settings.onnx_threads`); decoding stays in the request threads under
the `DecodeGate`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from photosieve.records import Decision


class ScoredLike(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def decision(self) -> Decision: ...
    @property
    def model_version(self) -> str: ...


class ImageScorer(Protocol):
    """What the service needs of `photosieve.scoring.Scorer`."""

    def score_images(self, images: Sequence[Image.Image]) -> Sequence[ScoredLike]: ...


class ScoringBusy(RuntimeError):
    """The scoring queue is full (or the batcher has been closed): try again shortly."""

    reason = "busy"


@dataclass
class _Job:
    scorer: ImageScorer
    images: Sequence[Image.Image]
    submitted: float  # time.monotonic()
    future: Future[list[ScoredLike]] = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the scoring thread has done so far (`/metrics`, tests)."""

    batches: int = 0
    requests: int = 0
    images: int = 0
    largest_batch: int = 0  # images in the biggest model call


class MicroBatcher:
    """Scores concurrent requests' images together on one scoring thread."""

    def __init__(self, *, batch_max: int, window_ms: float, queue_max: int) -> None:
        """The limits come from the service `Settings`: `batch_max`, `batch_window_ms`,
        `batch_queue_max` (where their defaults live)."""
        if batch_max < 1 or queue_max < 1 or window_ms < 0:
            raise ValueError(
                "batch_max and queue_max must be at least 1 and window_ms at least 0, got "
                f"{batch_max}, {queue_max}, {window_ms}"
            )
        self.batch_max = batch_max
        self.window_s = window_ms / 1000.0
        self.queue_max = queue_max
        self.stats = BatchStats()
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_batch_requests = 0

    def submit(
        self, scorer: ImageScorer, images: Sequence[Image.Image]
    ) -> Future[list[ScoredLike]]:
        """Queue `images` (one request's frames) for `scorer`; the future gets their scores in
        order. ScoringBusy when `queue_max` requests already wait or the batcher is closed."""
        if len(images) == 0:
            raise ValueError("nothing to score: a request needs at least one image")
        job = _Job(scorer, list(images), time.monotonic())
        with self._cond:
            if self._closed:
                raise ScoringBusy("the service is shutting down; try again shortly")
            if len(self._jobs) >= self.queue_max:
                raise ScoringBusy(
                    f"{len(self._jobs)} uploads are already waiting to be scored; try again shortly"
                )
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="photosieve-scoring", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return job.future

    def waiting(self) -> int:
        """Requests queued for the next batch (not the one being scored)."""
        with self._cond:
            return len(self._jobs)

    def snapshot(self) -> BatchStats:
        """A consistent copy of `stats` (for `/metrics`)."""
        with self._cond:
            return dataclasses.replace(self.stats)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> bool:
        """Whether the scoring thread is alive (it starts with the first request)."""
        return self._thread is not None and self._thread.is_alive()

    def score(self, scorer: ImageScorer, images: Sequence[Image.Image]) -> list[ScoredLike]:
        """`submit` and wait for the scores (the scoring thread's exception, if it failed)."""
        return self.submit(scorer, images).result()

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, score the queued ones, stop the scoring thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ---- the scoring thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._score(batch)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            if self._last_batch_requests > 1 and not self._closed:
                # Under load: let the batch fill, at most `window_s` after its oldest request.
                deadline = self._jobs[0].submitted + self.window_s
                while self._waiting_images() < self.batch_max and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = [self._jobs.popleft()]  # the first always goes, even if over batch_max
            size = len(batch[0].images)
            while self._jobs and size + len(self._jobs[0].images) <= self.batch_max:
                job = self._jobs.popleft()
                batch.append(job)
                size += len(job.images)
            self._last_batch_requests = len(batch)
            return batch

    def _waiting_images(self) -> int:
        return sum(len(job.images) for job in self._jobs)

    def _score(self, batch: list[_Job]) -> None:
        # Normally one scorer; tests (and a model swap) may leave requests for another one.
        groups: dict[int, list[_Job]] = {}
        for job in batch:
            groups.setdefault(id(job.scorer), []).append(job)
        for jobs in groups.values():
            images = [image for job in jobs for image in job.images]
            try:
                scored = list(jobs[0].scorer.score_images(images))
                if len(scored) != len(images):
                    raise RuntimeError(
                        f"the scorer returned {len(scored)} scores for {len(images)} images"
                    )
            except BaseException as exc:  # every waiter gets the failure; the thread goes on
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            with self._cond:
                self.stats.batches += 1
                self.stats.requests += len(jobs)
                self.stats.images += len(images)
                self.stats.largest_batch = max(self.stats.largest_batch, len(images))
            start = 0
            for job in jobs:
                job.future.set_result(scored[start : start + len(job.images)])
                start += len(job.images)

"""The local batch engine: decoding in worker processes ahead of onnxruntime batches.

An engine turns a list of photo paths into a frame with one row per path, in input order:
`path`, `score` (NaN when the photo could not be decoded), `decision` (approve / review /
remove, empty for a bad file), `error` (the decoder's reason, empty when scored). Bad files never
stop a run. `batch.decode.decode_for_model` is the per-photo step both engines share.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

import numpy as np
import pandas as pd

from photosieve.batch.decode import decode_batch, die_with_parent
from photosieve.bundle import ModelBundle
from photosieve.scoring import Scorer
from photosieve.vision.onnx import available_cores

COLUMNS = ("path", "score", "decision", "error")
# Batches decoded ahead of the model: enough to hide decode latency, bounded memory
# (a 224-px batch of 32 is ~4.8 MB).
AHEAD = 4


class Engine(Protocol):
    """Scores chunks of photo paths: one frame per chunk, in order, one row per path."""

    def score_chunks(self, chunks: Iterable[list[str]]) -> Iterator[pd.DataFrame]: ...

    def close(self) -> None: ...


def rows_from(
    paths: Sequence[str], scores: np.ndarray, decisions: Sequence[str], errors: Sequence[str]
) -> pd.DataFrame:
    """The engines' output frame (the columns in `COLUMNS`)."""
    return pd.DataFrame(
        {
            "path": list(paths),
            "score": np.asarray(scores, dtype=np.float64),
            "decision": list(decisions),
            "error": list(errors),
        }
    )


def score_decoded(
    scorer: Scorer, decoded: Sequence[list[np.ndarray] | str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Scores, decisions and errors for one batch of decoded photos (errors pass through); a
    photo with several frames takes its highest-scoring frame's score and decision."""
    scores = np.full(len(decoded), np.nan)
    decisions = [""] * len(decoded)
    errors = [d if isinstance(d, str) else "" for d in decoded]
    owners = [i for i, d in enumerate(decoded) if not isinstance(d, str) for _ in d]
    if owners:
        frames = np.stack([f for d in decoded if not isinstance(d, str) for f in d])
        scored = scorer.score_embeddings(scorer.embedder.embed_arrays(frames))  # (F,) frames
        for i, s in zip(owners, scored, strict=True):
            if np.isnan(scores[i]) or s.score > scores[i]:
                scores[i] = s.score
                decisions[i] = s.decision.value
    return scores, decisions, errors


def _frame(paths: list[str], parts: list[tuple[np.ndarray, list[str], list[str]]]) -> pd.DataFrame:
    """One chunk's frame from its scored batches."""
    if not parts:
        return rows_from([], np.zeros(0), [], [])
    return rows_from(
        paths,
        np.concatenate([p[0] for p in parts]),
        [d for p in parts for d in p[1]],
        [e for p in parts for e in p[2]],
    )


class LocalEngine:
    """Scores on this machine: `workers` decoding processes feed onnxruntime batches."""

    def __init__(
        self, bundle: ModelBundle, *, batch_size: int = 32, workers: int | None = None,
        scorer: Scorer | None = None,
    ) -> None:  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.scorer = scorer or Scorer(bundle)
        self.batch_size = batch_size
        self.workers = workers or available_cores()
        # spawn: onnxruntime's threads are already running in this process; never fork them
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=die_with_parent
        )

    def score(self, paths: Sequence[str]) -> pd.DataFrame:
        """The frame of one list of paths (see `score_chunks`)."""
        frames = list(self.score_chunks([list(paths)]))
        return frames[0] if frames else rows_from([], np.zeros(0), [], [])

    def score_chunks(self, chunks: Iterable[list[str]]) -> Iterator[pd.DataFrame]:
        """One frame per chunk, in order. Decoding runs `AHEAD` batches ahead of the model across
        chunk boundaries, so the model never waits for a new chunk's first batch; each worker
        task decodes a whole batch (one round trip per batch, not per photo)."""
        cfg = self.scorer.embedder.config.preprocess

        def batches() -> Iterator[tuple[int, list[str]]]:
            for n, chunk in enumerate(chunks):
                if not chunk:
                    yield n, []
                for s in range(0, len(chunk), self.batch_size):
                    yield n, chunk[s : s + self.batch_size]

        source = batches()
        queue: deque[tuple[int, list[str], Future[list[list[np.ndarray] | str]]]] = deque()

        def refill() -> None:
            while len(queue) < AHEAD:
                batch = next(source, None)
                if batch is None:
                    return
                queue.append((batch[0], batch[1], self._pool.submit(decode_batch, batch[1], cfg)))

        current: int | None = None
        paths: list[str] = []
        parts: list[tuple[np.ndarray, list[str], list[str]]] = []
        refill()
        while queue:
            chunk_no, batch_paths, future = queue.popleft()
            refill()
            if current is not None and chunk_no != current:
                yield _frame(paths, parts)
                paths, parts = [], []
            current = chunk_no
            paths.extend(batch_paths)
            parts.append(score_decoded(self.scorer, future.result()))
        if current is not None:
            yield _frame(paths, parts)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

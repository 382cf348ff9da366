"""The local batch engine: worker processes that each decode a batch and run onnxruntime on it.

Each worker holds the bundle and one single-threaded onnxruntime session (one worker per core
by default), takes whole batches of paths, decodes them and scores them; only paths go in and
scores come out, so no pixels cross a process boundary. While one worker decodes, the others
run the model: on 2 cores this beat one all-core session fed by decoding processes by ~1.3×
(`bench/batch_throughput.py`), because an intra-op parallel model stalls whenever a decoder
takes one of its cores.

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
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from photosieve.batch.decode import decode_batch, die_with_parent
from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.scoring import Scorer, backbone_for
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import available_cores, export_onnx

COLUMNS = ("path", "score", "decision", "error")
# Batches in flight per worker: one being scored, one waiting, so no worker idles between them.
AHEAD_PER_WORKER = 2


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


_WORKER_SCORER: Scorer | None = None  # the bundle's scorer in a worker process


def _start_worker(bundle_path: str) -> None:
    """Worker initializer: die with the parent; load the bundle and a one-thread session."""
    die_with_parent()
    global _WORKER_SCORER
    bundle = ModelBundle.load(bundle_path)
    _WORKER_SCORER = Scorer(bundle, Embedder(backbone_for(bundle.backbone_id), threads=1))


def _score_batch(paths: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """In a worker: decode a batch of paths and score it (scores, decisions, errors)."""
    scorer = _WORKER_SCORER
    if scorer is None:
        raise RuntimeError("worker not started")
    return score_decoded(scorer, decode_batch(paths, scorer.embedder.config.preprocess))


class LocalEngine:
    """Scores on this machine: `workers` processes (default: one per core), each decoding and
    scoring whole batches with its own one-thread onnxruntime session."""

    def __init__(
        self, bundle: ModelBundle, bundle_path: Path, *, batch_size: int = 32,
        workers: int | None = None,
    ) -> None:  # fmt: skip
        """`bundle` is the one saved at `bundle_path` (each worker loads it from there)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.workers = workers or available_cores()
        export_onnx(backbone_for(bundle.backbone_id), Workdir.default().root)  # once, not racing
        # spawn: never fork a process whose onnxruntime or torch threads may be running
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start_worker,
            initargs=(str(bundle_path),),
        )  # fmt: skip

    def score(self, paths: Sequence[str]) -> pd.DataFrame:
        """The frame of one list of paths (see `score_chunks`)."""
        frames = list(self.score_chunks([list(paths)]))
        return frames[0] if frames else rows_from([], np.zeros(0), [], [])

    def score_chunks(self, chunks: Iterable[list[str]]) -> Iterator[pd.DataFrame]:
        """One frame per chunk, in order. Batches stay in flight across chunk boundaries, so no
        worker waits for a new chunk; each task is a whole batch (one round trip per batch)."""

        def batches() -> Iterator[tuple[int, list[str]]]:
            for n, chunk in enumerate(chunks):
                if not chunk:
                    yield n, []
                for s in range(0, len(chunk), self.batch_size):
                    yield n, chunk[s : s + self.batch_size]

        source = batches()
        queue: deque[tuple[int, list[str], Future[tuple[np.ndarray, list[str], list[str]]]]]
        queue = deque()

        def refill() -> None:
            while len(queue) < AHEAD_PER_WORKER * self.workers:
                batch = next(source, None)
                if batch is None:
                    return
                queue.append((batch[0], batch[1], self._pool.submit(_score_batch, batch[1])))

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
            parts.append(future.result())
        if current is not None:
            yield _frame(paths, parts)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

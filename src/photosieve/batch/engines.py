"""The local batch engine: worker processes that each decode a batch and run onnxruntime on it.

Each worker holds the bundle as a `batch.worker.WorkerModel` — the backbone and the head as ONNX
graphs in single-threaded onnxruntime sessions, and the policy; no torch — (one worker per core
by default), takes whole batches of paths, decodes them and scores them; only paths go in and
scores come out, so no pixels cross a process boundary. While one worker decodes, the others
run the model: on 2 cores this beat one all-core session fed by decoding processes by ~1.3×
(`bench/batch_throughput.py`), because an intra-op parallel model stalls whenever a decoder
takes one of its cores.

An engine turns a list of photo paths into a frame with one row per path, in input order:
`path`, `score` (NaN when the photo could not be decoded), `decision` (approve / review /
remove, empty for a bad file), `error` (the decoder's reason, empty when scored). Bad files never
stop a run. `batch.worker.WorkerScorer` is the scoring both engines share.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from photosieve.batch.worker import WorkerModel, WorkerRefiner, score_batch, start_worker
from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.scoring import backbone_for
from photosieve.vision.backbone import backbone_config
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


def worker_model(bundle: ModelBundle, workdir: Path | None = None) -> WorkerModel:
    """What the workers score with, as plain data: the backbone's cached ONNX export, the head
    exported to ONNX as well, the preprocessing, the policy and the bundle version."""
    from photosieve.learn.head_onnx import export_head  # the driver exports; workers only run

    root = Workdir.of(workdir).root
    name = backbone_for(bundle.backbone_id)
    backbone = export_onnx(name, root)
    n_features = backbone_config(name).embed_dim
    refiner = None
    with tempfile.TemporaryDirectory(prefix="photosieve-head-") as tmp:
        head = export_head(bundle.head, n_features, Path(tmp) / "head.onnx").read_bytes()
        if bundle.refiner is not None:  # a cascade: its second backbone and head as well
            second = backbone_for(bundle.refiner.backbone_id)
            both = n_features + backbone_config(second).embed_dim
            refiner = WorkerRefiner(
                export_onnx(second, root).read_bytes(),
                export_head(bundle.refiner.head, both, Path(tmp) / "refiner.onnx").read_bytes(),
                bundle.refiner.preprocess,
                bundle.refiner.gate,
            )
    return WorkerModel(backbone.read_bytes(), head, bundle.preprocess, bundle.policy,
                       bundle.version, refiner)  # fmt: skip


class LocalEngine:
    """Scores on this machine: `workers` processes (default: one per core), each decoding and
    scoring whole batches with its own one-thread onnxruntime session."""

    def __init__(
        self, bundle: ModelBundle, *, batch_size: int = 32, workers: int | None = None
    ) -> None:
        """Each worker gets `bundle` as a `WorkerModel` (ONNX graphs, policy), pickled once."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.workers = workers or available_cores()
        model = worker_model(bundle)
        # spawn: never fork a process whose onnxruntime or torch threads may be running
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=start_worker, initargs=(model,)
        )

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
                queue.append((batch[0], batch[1], self._pool.submit(score_batch, batch[1])))

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

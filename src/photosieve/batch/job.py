"""A resumable backlog scoring job: photos → Parquet of scores and bands, chunk by chunk.

The photos are cut into fixed chunks in the source's order. Each finished chunk is written
atomically as `<out>.parts/<chunk>.parquet`; a killed run started again skips the chunks already
there (checking they hold the same photos) and scores only the rest, so the final file is the
same. When every chunk is done the parts are joined, in order, into `<out>` (atomically) and the
parts folder is removed. `job.json` in the parts folder pins the bundle version and chunk size: a
different job refuses to reuse someone else's parts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from photosieve.batch.engines import Engine, LocalEngine
from photosieve.batch.sources import chunked, iter_photos
from photosieve.bundle import ModelBundle

ENGINES = ("local", "ray")
# (photos done, photos scored by this run, seconds) after every chunk.
ProgressCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class BacklogConfig:
    """How a backlog is cut and batched (recorded in `job.json`)."""

    chunk_size: int = 2048
    batch_size: int = 32
    engine: str = "local"
    # Worker processes (local; None: the cores) or actors (ray; None: the cluster's CPUs).
    workers: int | None = None
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        if self.chunk_size < 1 or self.batch_size < 1:
            raise ValueError("chunk_size and batch_size must be at least 1")


@dataclass
class BacklogSummary:
    """What a run did: totals over the whole output, and what this run scored itself."""

    out: Path
    photos: int = 0
    failed: int = 0
    scored_now: int = 0
    resumed_chunks: int = 0
    seconds: float = 0.0
    by_decision: dict[str, int] = field(default_factory=dict)


def make_engine(bundle: ModelBundle, bundle_path: Path, cfg: BacklogConfig) -> Engine:
    """The engine `cfg.engine` names, holding one scorer per worker."""
    if cfg.engine == "ray":
        from photosieve.batch.ray_engine import RayEngine  # optional extra: photosieve[ray]

        return RayEngine(bundle_path, batch_size=cfg.batch_size, actors=cfg.workers,
                         address=cfg.ray_address)  # fmt: skip
    return LocalEngine(bundle, batch_size=cfg.batch_size, workers=cfg.workers)


def score_backlog(
    source: Path,
    bundle_path: Path,
    out: Path,
    cfg: BacklogConfig | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> BacklogSummary:
    """Score every photo of `source` with the bundle; write `out` (Parquet), resumably."""
    cfg = cfg or BacklogConfig()
    bundle = ModelBundle.load(bundle_path)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    _claim_parts(parts, bundle.version, cfg)
    started = time.perf_counter()
    summary = BacklogSummary(out=out)
    done = 0
    pending: deque[int] = deque()

    def todo() -> Iterator[list[str]]:
        """Chunks still to score (finished ones are counted and skipped), noting their index."""
        nonlocal done
        for index, chunk in enumerate(chunked(iter_photos(source), cfg.chunk_size)):
            part = parts / f"{index:08d}.parquet"
            if part.is_file() and _same_photos(part, chunk):
                summary.resumed_chunks += 1
                done += len(chunk)
                continue
            pending.append(index)
            yield chunk

    engine = make_engine(bundle, Path(bundle_path), cfg)
    try:
        for frame in engine.score_chunks(todo()):
            frame["model_version"] = bundle.version
            part = parts / f"{pending.popleft():08d}.parquet"
            _write_atomic(pa.Table.from_pandas(frame, preserve_index=False), part)
            summary.scored_now += len(frame)
            done += len(frame)
            if on_progress is not None:
                on_progress(done, summary.scored_now, time.perf_counter() - started)
    finally:
        engine.close()
    _join(parts, out, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _claim_parts(parts: Path, version: str, cfg: BacklogConfig) -> None:
    job = {"bundle_version": version, "chunk_size": cfg.chunk_size}
    job_file = parts / "job.json"
    if job_file.is_file():
        found = json.loads(job_file.read_text())
        if found != job:
            raise ValueError(
                f"{parts} holds the parts of another job ({found}); remove it or choose "
                "another --out"
            )
        return
    parts.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job))


def _same_photos(part: Path, chunk: list[str]) -> bool:
    return pq.read_table(part, columns=["path"]).column(0).to_pylist() == chunk


def _write_atomic(table: pa.Table, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)


def _join(parts: Path, out: Path, summary: BacklogSummary) -> None:
    files = sorted(parts.glob("[0-9]*.parquet"))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    counts: dict[str, int] = {}
    writer: pq.ParquetWriter | None = None
    try:
        for file in files:
            table = pq.read_table(file)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            frame: pd.DataFrame = table.select(["decision", "error"]).to_pandas()
            summary.photos += len(frame)
            summary.failed += int((frame["error"] != "").sum())
            for decision, n in frame["decision"][frame["error"] == ""].value_counts().items():
                counts[str(decision)] = counts.get(str(decision), 0) + int(n)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no photos at all: an empty file with the columns
        _write_atomic(pa.Table.from_pandas(pd.DataFrame(columns=["path", "score", "decision",
                      "error", "model_version"])), out)  # fmt: skip
    else:
        os.replace(tmp, out)
    summary.by_decision = counts
    shutil.rmtree(parts)

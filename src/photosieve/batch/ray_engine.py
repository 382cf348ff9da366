"""The Ray engine: the same scoring as `LocalEngine`, on Ray Data (optional extra `[ray]`).

`map_batches` runs a fixed pool of actors (`batch.worker.ScoreBatches`); each holds the bundle as
a `WorkerModel`, shipped to it once (the backbone and head ONNX graphs as bytes and the policy, so
a remote node needs no shared disk, and an actor imports no torch). Order is preserved, so chunk
frames come back in input order. Without `address` a local Ray with this machine's cores is
started; `address="auto"` or `ray://host:10001` joins an existing cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
import ray

from photosieve.batch.engines import rows_from, worker_model
from photosieve.batch.worker import ScoreBatches
from photosieve.bundle import ModelBundle
from photosieve.vision.onnx import available_cores

# Chunks handed to one Ray Data pipeline at a time (bounds the driver's list of paths).
WINDOW = 32
BLOCKS_PER_ACTOR = 4
PATHS_PER_BLOCK = 384


WORKER_NICENESS = 0  # the local Ray this engine starts; a cluster keeps its own setting


class RayEngine:
    """Scores chunks on Ray Data with `actors` actors (default: the cluster's CPUs)."""

    def __init__(
        self, bundle_path: Path, *, batch_size: int = 32, actors: int | None = None,
        address: str | None = None, workdir: Path | None = None,
    ) -> None:  # fmt: skip
        if not ray.is_initialized():
            if address is None:
                # Ray runs its workers at nice 15 by default: on a machine it shares with
                # the driver and Ray's own daemons the scoring actors came last (bench).
                ray.init(num_cpus=available_cores(), include_dashboard=False,
                         log_to_driver=False, configure_logging=False,
                         _system_config={"worker_niceness": WORKER_NICENESS})  # fmt: skip
            else:
                ray.init(address=address, log_to_driver=False)
        self._started_here = address is None
        self.batch_size = batch_size
        self.actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        model = worker_model(ModelBundle.load(bundle_path), workdir)  # shipped once an actor
        self._kwargs: dict[str, Any] = {"model": model}
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False

    def score_chunks(self, chunks: Iterable[list[str]]) -> Iterator[pd.DataFrame]:
        it = iter(chunks)
        while window := list(islice(it, WINDOW)):
            rows = [{"path": p} for chunk in window for p in chunk]
            # A few hundred paths a block: Ray's default cut many tiny blocks, whose scheduling
            # cost ~8% of a 2-core machine (bench/README.md, batch_throughput.py).
            blocks = max(BLOCKS_PER_ACTOR * self.actors, len(rows) // PATHS_PER_BLOCK)
            ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                ScoreBatches,
                fn_constructor_kwargs=self._kwargs,
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                batch_size=self.batch_size,
                batch_format="numpy",
                num_cpus=1,
            )
            frame = ds.to_pandas()
            start = 0
            for chunk in window:
                part = frame.iloc[start : start + len(chunk)]
                start += len(chunk)
                yield rows_from(part["path"].tolist(), part["score"].to_numpy(),
                                part["decision"].tolist(), part["error"].tolist())  # fmt: skip

    def close(self) -> None:
        if self._started_here and ray.is_initialized():
            ray.shutdown()

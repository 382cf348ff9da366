"""The Ray engine: the same scoring as `LocalEngine`, on Ray Data (optional extra `[ray]`).

`map_batches` runs a fixed pool of actors; each actor holds one onnxruntime session and the
bundle, shipped to it once (the bundle's files and the ONNX graph as bytes, so a remote node needs
no shared disk). Order is preserved, so chunk frames come back in input order. Without `address`
a local Ray with this machine's cores is started; `address="auto"` or `ray://host:10001` joins an
existing cluster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from photosieve.batch.decode import decode_for_model
from photosieve.batch.engines import rows_from, score_decoded
from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.scoring import Scorer, backbone_for
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import available_cores, export_onnx, onnx_path

# Chunks handed to one Ray Data pipeline at a time (bounds the driver's list of paths).
WINDOW = 32
BLOCKS_PER_ACTOR = 4
PATHS_PER_BLOCK = 384


class _ScoreBatches:
    """A Ray Data actor: unpacks the bundle once, then decodes and scores batches of paths."""

    def __init__(self, files: dict[str, bytes], onnx: bytes, backbone: str) -> None:
        root = Path(tempfile.mkdtemp(prefix="photosieve-actor-"))
        bundle_dir = root / "bundle"
        bundle_dir.mkdir()
        for name, data in files.items():
            (bundle_dir / name).write_bytes(data)
        graph = onnx_path(backbone, root)
        graph.parent.mkdir(parents=True)
        graph.write_bytes(onnx)
        bundle = ModelBundle.load(bundle_dir)
        self.scorer = Scorer(bundle, Embedder(backbone, workdir=root, threads=1))
        self.cfg = self.scorer.embedder.config.preprocess

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        scores, decisions, errors = score_decoded(
            self.scorer, [decode_for_model(p, self.cfg) for p in paths]
        )
        return {
            "path": np.asarray(paths, dtype=object),
            "score": scores,
            "decision": np.asarray(decisions, dtype=object),
            "error": np.asarray(errors, dtype=object),
        }


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
        bundle = ModelBundle.load(bundle_path)
        backbone = backbone_for(bundle.backbone_id)
        self.batch_size = batch_size
        self.actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        onnx = export_onnx(backbone, Workdir.of(workdir).root).read_bytes()  # cached export
        files = {p.name: p.read_bytes() for p in Path(bundle_path).iterdir() if p.is_file()}
        self._kwargs: dict[str, Any] = {"files": files, "onnx": onnx, "backbone": backbone}
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
                _ScoreBatches,
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

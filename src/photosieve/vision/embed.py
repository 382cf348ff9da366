"""Photos → backbone embeddings: the `Embedder` (ONNX Runtime) and the cached `embed_files`.

`embed_files` hashes every file (SHA-256 of its bytes), takes what the on-disk cache already
has for the backbone's id, and embeds only the rest: a pool of decoder threads (Pillow releases
the GIL while decoding and resizing) keeps a few batches ready while onnxruntime runs the
current one, so the CPU never waits on either. New embeddings are written to the cache in
shards as they are computed, so an interrupted run keeps most of its work.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from photosieve.config import DEFAULT_BACKBONE, Workdir
from photosieve.records import sha256_file
from photosieve.vision.backbone import BackboneConfig, backbone_config
from photosieve.vision.cache import EmbeddingCache
from photosieve.vision.onnx import INPUT_NAME, available_cores, create_session, export_onnx
from photosieve.vision.preprocess import ImageDecodeError, load_for_model, resize_for_model

SHARD_SIZE = 1024  # new embeddings per cache shard
MIRROR_SUFFIX = "-mirror"  # the cache of mirrored photos' embeddings: `<backbone id>-mirror`
OnError = Literal["raise", "nan"]


class Embedder:
    """Runs a backbone's exported feature extractor with onnxruntime.

    The ONNX export is created on first use and cached under `<workdir>/onnx/`. `threads`
    defaults to the cores this process may use.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        workdir: Path | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.backbone = backbone
        self.workdir = Workdir.of(workdir).root
        self.config: BackboneConfig = backbone_config(backbone)
        self.threads = threads or available_cores()
        self.batches_run = 0  # model calls so far (lets callers check the cache did its job)
        self._session = create_session(export_onnx(backbone, self.workdir), threads=self.threads)

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 resized photos → (N, embed_dim) float32 embeddings."""
        size = self.config.preprocess.input_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
            raise ValueError(
                f"expected a uint8 batch of shape (N, {size}, {size}, 3), "
                f"got {batch.dtype} {batch.shape}"
            )
        if len(batch) == 0:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        self.batches_run += 1
        (out,) = self._session.run(None, {INPUT_NAME: batch})
        return np.asarray(out, dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Decoded RGB photos (e.g. from `load_image`) → (N, embed_dim) float32 embeddings."""
        cfg = self.config.preprocess
        out = np.zeros((len(images), self.config.embed_dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            arrays = [np.asarray(resize_for_model(img.convert("RGB"), cfg)) for img in chunk]
            out[start : start + len(chunk)] = self.embed_arrays(np.stack(arrays))
        return out


def embed_files(
    paths: Sequence[Path],
    *,
    workdir: Path | None = None,
    backbone: str = DEFAULT_BACKBONE,
    batch_size: int = 32,
    progress: bool = True,
    on_error: OnError = "raise",
    embedder: Embedder | None = None,
    stats: dict[str, float] | None = None,
    mirror: bool = False,
) -> np.ndarray:
    """Embeddings (N, embed_dim) float32 of the photo files, aligned with `paths`.

    Cached by (SHA-256 of the file's bytes, backbone id) under `<workdir>/embeddings/`: files
    seen before cost a hash, not a model run. `mirror` embeds each photo flipped left to right
    (a training view, cached apart under `<backbone id>-mirror`). An unreadable photo raises
    `ImageDecodeError` naming the file; with `on_error="nan"` its row is NaN instead. Pass
    `stats` (a dict) to get counts back: `images`, `cached`, `computed`, `failed`, `seconds`,
    and where the time went: `model_seconds`, `decode_wait_seconds`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
    started = time.perf_counter()
    root = Workdir.of(workdir).root
    cfg = embedder.config if embedder is not None else backbone_config(backbone)
    paths = [Path(p) for p in paths]
    cache = EmbeddingCache(root, f"{cfg.id}{MIRROR_SUFFIX}" if mirror else cfg.id, cfg.embed_dim)
    workers = max(2, available_cores())

    with _progress(progress) as bar:
        keys = _hash_all(paths, workers, bar)
        found, out = cache.lookup(keys)
        todo: list[int] = np.flatnonzero(~found).tolist()
        # Duplicate files in one call: embed each distinct content once.
        first_of: dict[str, int] = {}
        unique = [i for i in todo if first_of.setdefault(keys[i], i) == i]
        failed: list[int] = []
        timing = {"model_seconds": 0.0, "decode_wait_seconds": 0.0}
        if unique:
            model = embedder or Embedder(backbone, root)
            task = bar.add_task("embedding", total=len(unique)) if bar else None
            pending_keys: list[str] = []
            pending_rows: list[np.ndarray] = []
            for idx, vectors, bad in _embed_stream(
                paths, unique, model, batch_size, workers, timing, mirror=mirror
            ):
                for i, err in bad:
                    if on_error == "raise":
                        raise ImageDecodeError(err.reason, f"{paths[i]}: {err.message}") from err
                    failed.append(i)
                    out[i] = np.nan
                out[idx] = vectors
                pending_keys.extend(keys[i] for i in idx)
                pending_rows.append(vectors)
                if len(pending_keys) >= SHARD_SIZE:
                    cache.append(pending_keys, np.concatenate(pending_rows))
                    pending_keys, pending_rows = [], []
                if bar is not None and task is not None:
                    bar.advance(task, len(idx) + len(bad))
            if pending_keys:
                cache.append(pending_keys, np.concatenate(pending_rows))
        for i in todo:
            if first_of[keys[i]] != i:  # a duplicate of a file embedded (or failed) above
                out[i] = out[first_of[keys[i]]]
    if stats is not None:
        stats.update(
            images=len(paths),
            cached=int(found.sum()),
            computed=len(unique) - len(failed),
            failed=int(np.isnan(out[:, 0]).sum()) if failed else 0,
            seconds=time.perf_counter() - started,
            **timing,
        )
    return out


def _hash_all(paths: Sequence[Path], workers: int, bar: Progress | None) -> list[str]:
    if not paths:
        return []
    task = bar.add_task("hashing", total=len(paths)) if bar else None

    def one(path: Path) -> str:
        try:
            return sha256_file(path)
        except OSError as exc:
            raise ImageDecodeError("missing", f"{path}: cannot read the file: {exc}") from exc

    keys: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        for key in pool.map(one, paths, chunksize=64):
            keys.append(key)
            if bar is not None and task is not None and len(keys) % 256 == 0:
                bar.update(task, completed=len(keys))
    if bar is not None and task is not None:
        bar.update(task, completed=len(keys))
    return keys


Decoded = np.ndarray | ImageDecodeError


def _embed_stream(
    paths: Sequence[Path],
    indices: Sequence[int],
    model: Embedder,
    batch_size: int,
    workers: int,
    timing: dict[str, float],
    *,
    mirror: bool = False,
) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, ImageDecodeError]]]]:
    """Yield (indices, embeddings, failures) per batch; decoding runs ahead in threads.

    `timing` accumulates `model_seconds` (in onnxruntime) and `decode_wait_seconds` (the model
    idle, waiting for decoders: near zero when the pipeline keeps up).
    """
    cfg = model.config.preprocess
    size = cfg.input_size

    def decode(i: int) -> Decoded:
        try:
            return load_for_model(paths[i], cfg, mirror=mirror)
        except ImageDecodeError as exc:
            return exc

    batches = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    ahead = 3  # batches decoded ahead of the model
    buffer = np.empty((batch_size, size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        queue: deque[list[Future[Decoded]]] = deque()

        def submit(batch: Sequence[int]) -> list[Future[Decoded]]:
            return [pool.submit(decode, i) for i in batch]

        for batch in batches[:ahead]:
            queue.append(submit(batch))
        for n, batch in enumerate(batches):
            futures = queue.popleft()
            if n + ahead < len(batches):
                queue.append(submit(batches[n + ahead]))
            good: list[int] = []
            bad: list[tuple[int, ImageDecodeError]] = []
            waited = time.perf_counter()
            futures_wait(futures)
            timing["decode_wait_seconds"] += time.perf_counter() - waited
            for i, future in zip(batch, futures, strict=True):
                result = future.result()
                if isinstance(result, ImageDecodeError):
                    bad.append((i, result))
                else:
                    buffer[len(good)] = result
                    good.append(i)
            started = time.perf_counter()
            vectors = model.embed_arrays(buffer[: len(good)])
            timing["model_seconds"] += time.perf_counter() - started
            yield good, vectors, bad


class _RateColumn(ProgressColumn):
    """Images per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None or not math.isfinite(speed):
            return Text("— img/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} img/s", style="progress.data.speed")


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(enabled: bool) -> Progress | _NullContext:
    if not enabled:
        return _NullContext()
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})


def image_paths(source: Path) -> list[Path]:
    """The photos named by `source`: a folder (searched recursively, sorted) or a manifest.

    A manifest is a CSV or Parquet file with a `path` column; relative paths are taken relative
    to the manifest's folder.
    """
    source = Path(source)
    if source.is_dir():
        return sorted(
            p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    if not source.is_file():
        raise ValueError(f"{source} is neither a folder of photos nor a manifest file")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(source, usecols=lambda c: c == "path", dtype=str)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(source, columns=["path"])
    else:
        raise ValueError(f"{source}: a manifest must be .csv or .parquet, not {suffix!r}")
    if "path" not in frame.columns:
        raise ValueError(f"{source}: the manifest has no 'path' column")
    if frame["path"].isna().any():
        raise ValueError(f"{source}: {int(frame['path'].isna().sum())} rows have an empty path")
    return [(source.parent / p).resolve() for p in frame["path"].astype(str)]

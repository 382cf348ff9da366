"""Where a backlog's photos come from, streamed in a fixed order (never all held in memory).

A folder is walked depth-first with the names of every directory sorted (a deterministic order
without a global sort); a manifest (CSV or Parquet with a `path` column, relative paths taken
from the manifest's folder) is read in its own row order, in blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from photosieve.vision.embed import IMAGE_SUFFIXES

BLOCK_ROWS = 65_536


def iter_photos(source: Path) -> Iterator[str]:
    """Paths of the photos named by `source` (a folder or a manifest), in a fixed order."""
    source = Path(source)
    if source.is_dir():
        yield from _walk(source)
        return
    if not source.is_file():
        raise ValueError(f"{source} is neither a folder of photos nor a manifest file")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        blocks: Iterator[list[str]] = (
            block["path"].astype(str).tolist()
            for block in pd.read_csv(source, usecols=["path"], dtype=str, chunksize=BLOCK_ROWS)
        )
    elif suffix in (".parquet", ".pq"):
        blocks = (
            batch.column(0).to_pylist()
            for batch in pq.ParquetFile(source).iter_batches(BLOCK_ROWS, columns=["path"])
        )
    else:
        raise ValueError(f"{source}: a manifest must be .csv or .parquet with a 'path' column")
    base = source.parent
    for block in blocks:
        for path in block:
            yield str(path) if os.path.isabs(path) else str(base / path)


def _walk(root: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield os.path.join(folder, name)


def chunked(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of `size` paths (the last may be shorter)."""
    while chunk := list(islice(paths, size)):
        yield chunk


def count_photos(source: Path) -> int:
    """How many photos `iter_photos(source)` will yield (a cheap pass: names only)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".parquet", ".pq"):
        return int(pq.ParquetFile(source).metadata.num_rows)
    return sum(1 for _ in iter_photos(source))

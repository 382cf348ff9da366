"""Manifest files (CSV or Parquet): reading, validating and writing the tables stages exchange.

A manifest is one row per photo. The columns later stages rely on are `records.MANIFEST_COLUMNS`
(`path, label, source, sha256, phash, group_id, split`); any other column (`origin`, `user_id`,
...) passes through untouched. Paths are stored absolute; relative paths in a file are resolved
against the file's folder when read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from photosieve.records import MANIFEST_COLUMNS, PRIMARY_SOURCE, Label, Split

# What `photosieve ingest` writes: every manifest column except `split`.
INGESTED_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_COLUMNS if c != "split")
# The least a raw manifest handed to `photosieve ingest` must have.
RAW_COLUMNS: tuple[str, ...] = ("path", "label")

_SUFFIXES = (".csv", ".parquet", ".pq")
# Extra columns written by ingest that read back as integers (CSV keeps everything else as text).
_INT_COLUMNS = ("width", "height")


class ManifestError(ValueError):
    """A manifest file that cannot be used as it is; the message says what to fix."""


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise ManifestError(
            f"{path}: unknown manifest format {path.suffix!r}; use .csv or .parquet"
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (all columns as text, nothing turned into NaN) or Parquet file as it is."""
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise ManifestError(f"no such manifest: {path}")
    if path.suffix.lower() == ".csv":
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError as exc:
            raise ManifestError(f"{path}: the file is empty (expected a header row)") from exc
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: not a readable CSV file: {exc}") from exc
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types
        raise ManifestError(f"{path}: not a readable Parquet file: {exc}") from exc


def resolve_paths(paths: pd.Series, base: Path) -> pd.Series:
    """Absolute path strings; relative ones are taken relative to `base`."""

    def one(value: object) -> str:
        text = str(value).strip()
        if not text:
            return ""
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = base / candidate
        return os.path.normpath(str(candidate.absolute()))

    return paths.map(one).astype(str)


def _bad_values(frame: pd.DataFrame, column: str, allowed: set[str]) -> list[str]:
    values = set(frame[column].astype(str).unique())
    return sorted(values - allowed)


def validate_manifest(frame: pd.DataFrame, *, columns: Sequence[str], where: str) -> None:
    """Raise `ManifestError` unless `frame` has `columns` with valid labels/splits/sources."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{where}: missing column(s) {missing}; found {list(frame.columns)}. "
            f"A split manifest needs {list(MANIFEST_COLUMNS)}: run `photosieve ingest` "
            "then `photosieve split` to make one."
        )
    closed = (  # columns with a closed set of values, and what to say about a stray one
        ("label", {label.value for label in Label}, "labels are 'offensive' or 'ok' (run "
         "`photosieve ingest --positive-name ... --negative-name ...` to map yours)"),
        ("split", {split.value for split in Split}, f"known: {[s.value for s in Split]}"),
    )  # fmt: skip
    for column, allowed, hint in closed:
        if column in frame.columns and column in columns:
            bad = _bad_values(frame, column, allowed)
            if bad:
                raise ManifestError(f"{where}: unknown {column}(s) {bad[:5]}; {hint}")
    if "source" in frame.columns and "source" in columns:
        sources = frame["source"].astype(str)
        bad_sources = sorted(
            set(sources[(sources != PRIMARY_SOURCE) & ~sources.str.startswith("external:")])
        )
        if bad_sources:
            raise ManifestError(
                f"{where}: unknown source(s) {bad_sources[:5]}; use 'primary' or 'external:<name>'"
            )
    if "path" in frame.columns and frame["path"].duplicated().any():
        dup = frame.loc[frame["path"].duplicated(), "path"].iloc[0]
        raise ManifestError(f"{where}: path listed more than once, e.g. {dup}")


def read_manifest(path: str | Path, *, columns: Sequence[str] = MANIFEST_COLUMNS) -> pd.DataFrame:
    """Read and validate a manifest (CSV or Parquet); `path` becomes absolute.

    `columns` are required (default: the full split manifest). Raises `ManifestError` with what
    to fix when a column is missing or a label, split or source is unknown.
    """
    path = Path(path)
    frame = read_table(path)
    frame = frame.copy()
    if "path" in frame.columns:
        frame["path"] = resolve_paths(frame["path"], path.parent.absolute())
    validate_manifest(frame, columns=columns, where=str(path))
    if "group_id" in frame.columns:
        try:
            frame["group_id"] = frame["group_id"].astype("int64")
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: group_id must be whole numbers: {exc}") from exc
    for column in _INT_COLUMNS:
        if column in frame.columns:
            numeric = pd.to_numeric(frame[column], errors="coerce")
            if numeric.notna().all():
                frame[column] = numeric.astype("int64")
    return frame


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Manifest columns first (in `MANIFEST_COLUMNS` order), then any extra columns."""
    known = [c for c in MANIFEST_COLUMNS if c in frame.columns]
    extra = [c for c in frame.columns if c not in MANIFEST_COLUMNS]
    return frame[known + extra]


def write_manifest(
    frame: pd.DataFrame, path: str | Path, *, columns: Sequence[str] = ("path", "label")
) -> Path:
    """Validate and write a manifest atomically (CSV or Parquet by suffix); returns the path.

    The file appears whole or not at all: it is written beside the target, then renamed.
    """
    path = Path(path)
    _check_suffix(path)
    validate_manifest(frame, columns=columns, where=f"manifest for {path}")
    frame = order_columns(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp_name, index=False)
        else:
            frame.to_parquet(tmp_name, index=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path

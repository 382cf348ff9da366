"""Ingest labelled photos: a folder tree or a manifest → validated, hashed, grouped rows + rejects.

Every input row ends up either accepted (with `sha256`, `phash`, `group_id`) or rejected with a
reason, never dropped silently. Reasons, checked in this order:

- `unknown_label`: label is neither the positive nor the negative name;
- `bad_source`: source is neither `primary` nor `external:<name>`;
- `duplicate_path`: the same file listed again (the first listing is kept);
- `missing_file`: no file at the path;
- `unreadable_image`: `load_image` refused it (`detail` starts with its reason: `truncated`,
  `not_an_image`, `empty`, `unsupported_format`, `too_large`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from photosieve.data.dedupe import (
    NEAR_DUPLICATE_DISTANCE,
    DuplicateGroups,
    conflicting_groups,
    duplicate_groups,
    perceptual_hash,
)
from photosieve.data.manifest import RAW_COLUMNS, ManifestError, read_table, resolve_paths
from photosieve.records import PRIMARY_SOURCE, Label, sha256_bytes
from photosieve.vision.preprocess import ImageDecodeError, load_image

REJECT_REASONS: tuple[str, ...] = (
    "unknown_label",
    "bad_source",
    "duplicate_path",
    "missing_file",
    "unreadable_image",
)
REJECT_COLUMNS: tuple[str, ...] = ("row", "path", "label", "source", "reason", "detail")


@dataclass(frozen=True)
class IngestResult:
    """Accepted rows (manifest columns minus `split`), rejects with reasons, label conflicts."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    conflicts: pd.DataFrame  # accepted rows of duplicate groups with mixed labels
    groups: DuplicateGroups


@dataclass(frozen=True)
class _Inspection:
    reason: str | None
    detail: str
    sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0


def is_valid_source(source: str) -> bool:
    """`primary` or `external:<name>`."""
    return source == PRIMARY_SOURCE or (
        source.startswith("external:") and len(source) > len("external:")
    )


def inspect_file(path: str) -> _Inspection:
    """Read one file once: SHA-256 of its bytes, decode with `load_image`, pHash the pixels."""
    file = Path(path)
    if not file.is_file():
        return _Inspection("missing_file", f"no such file: {path}")
    data = file.read_bytes()
    try:
        image = load_image(data)
    except ImageDecodeError as exc:
        return _Inspection("unreadable_image", f"{exc.reason}: {exc.message}")
    return _Inspection(
        None, "", sha256_bytes(data), perceptual_hash(image), image.width, image.height
    )


def collect_folder(root: Path) -> pd.DataFrame:
    """Rows for `<root>/<label>/**/<file>`; files outside a label folder get an empty label."""
    rows = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        label = relative.parts[0] if len(relative.parts) > 1 else ""
        rows.append({"path": str(file.absolute()), "label": label})
    return pd.DataFrame(rows, columns=["path", "label"], dtype=str)


def collect_manifest(path: Path) -> pd.DataFrame:
    """Rows of a CSV/Parquet manifest (`path,label[,source,...]`), paths made absolute."""
    frame = read_table(path).copy()
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {missing}; a manifest to ingest needs "
            f"`path,label[,source][,user_id][,uploaded_at]` (found {list(frame.columns)})"
        )
    # Parquet may hold None/NaN in text columns: they mean "not given", like an empty CSV cell.
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    frame[text] = frame[text].fillna("").astype(str)
    frame["path"] = resolve_paths(frame["path"], path.parent.absolute())
    return frame


def collect(source: Path) -> pd.DataFrame:
    """Rows from a folder tree or a manifest file."""
    if source.is_dir():
        return collect_folder(source)
    if source.is_file():
        return collect_manifest(source)
    raise ValueError(f"nothing to ingest at {source}: give a folder or a .csv/.parquet manifest")


def _map_parallel(
    fn: Callable[[str], _Inspection],
    paths: Sequence[str],
    workers: int,
    on_done: Callable[[int], None] | None,
) -> list[_Inspection]:
    out: list[_Inspection] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Pillow and pHash release the GIL in their C loops, so threads overlap the decoding.
        for result in pool.map(fn, paths):
            out.append(result)
            if on_done is not None:
                on_done(1)
    return out


def ingest(
    source: str | Path,
    *,
    positive_name: str = Label.OFFENSIVE.value,
    negative_name: str = Label.OK.value,
    source_name: str | None = None,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> IngestResult:
    """Validate, hash and group every photo of a folder tree or manifest.

    `positive_name`/`negative_name` map the input's labels (case-insensitive) to `offensive` /
    `ok`; `source_name` sets the source of every row (default: the manifest's `source` column,
    else `primary`). `on_total(n)` then `on_progress(k)` report decoding progress.
    """
    source = Path(source)
    if positive_name.strip().lower() == negative_name.strip().lower():
        raise ValueError(f"positive and negative label names are both {positive_name!r}")
    if source_name is not None and not is_valid_source(source_name):
        raise ValueError(f"--source {source_name!r}: use 'primary' or 'external:<name>'")
    frame = collect(source).reset_index(drop=True)
    frame.insert(0, "row", range(1, len(frame) + 1))
    if source_name is not None:
        frame["source"] = source_name
    elif "source" not in frame.columns:
        frame["source"] = PRIMARY_SOURCE
    frame["source"] = frame["source"].astype(str).str.strip().replace("", PRIMARY_SOURCE)

    names = {
        positive_name.strip().lower(): Label.OFFENSIVE.value,
        negative_name.strip().lower(): Label.OK.value,
    }
    raw_label = frame["label"].astype(str)
    mapped = raw_label.str.strip().str.lower().map(names)
    reason = pd.Series("", index=frame.index, dtype=str)
    detail = pd.Series("", index=frame.index, dtype=str)
    unknown = mapped.isna()
    reason[unknown] = "unknown_label"
    detail[unknown] = (
        "label " + raw_label[unknown].map(repr) + f" is neither {positive_name!r} (offensive) "
        f"nor {negative_name!r} (ok)"
    )
    bad_source = (reason == "") & ~frame["source"].map(is_valid_source)
    reason[bad_source] = "bad_source"
    detail[bad_source] = (
        "source "
        + frame.loc[bad_source, "source"].map(repr)
        + (" is neither 'primary' nor 'external:<name>'")
    )
    dup = (reason == "") & frame["path"].duplicated()
    reason[dup] = "duplicate_path"
    detail[dup] = "listed again; the first listing was kept"

    todo = frame.index[reason == ""]
    if on_total is not None:
        on_total(len(todo))
    inspections = _map_parallel(
        inspect_file, frame.loc[todo, "path"].tolist(), workers or os.cpu_count() or 1, on_progress
    )
    hashes = pd.DataFrame(
        [(i.reason or "", i.detail, i.sha256, i.phash, i.width, i.height) for i in inspections],
        index=todo,
        columns=["reason", "detail", "sha256", "phash", "width", "height"],
    )
    reason[todo] = hashes["reason"]
    detail[todo] = hashes["detail"]

    bad = reason != ""
    # Assign the masked series: assigning a longer one to an empty frame would adopt its index.
    rejected = frame[bad].assign(reason=reason[bad], detail=detail[bad])
    rejected = rejected[
        list(REJECT_COLUMNS) + [c for c in frame.columns if c not in REJECT_COLUMNS]
    ]
    ok = ~bad
    accepted = frame[ok].drop(columns=["row"]).assign(label=mapped[ok])
    accepted = accepted.join(hashes.loc[ok[ok].index, ["sha256", "phash", "width", "height"]])
    accepted = accepted.reset_index(drop=True)
    groups = duplicate_groups(
        accepted["sha256"].tolist(), accepted["phash"].tolist(), max_distance=max_distance
    )
    accepted["group_id"] = groups.group_id
    first = ["path", "label", "source", "sha256", "phash", "group_id"]
    accepted = accepted[first + [c for c in accepted.columns if c not in first]]
    return IngestResult(
        accepted=accepted,
        rejected=rejected.reset_index(drop=True),
        conflicts=conflicting_groups(accepted).reset_index(drop=True),
        groups=groups,
    )

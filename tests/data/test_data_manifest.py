"""Manifest files: CSV/Parquet round trips, validation with actionable errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from photosieve.data.manifest import (
    INGESTED_COLUMNS,
    ManifestError,
    read_manifest,
    write_manifest,
)
from photosieve.records import MANIFEST_COLUMNS


def manifest_frame(base: Path) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin": ["a/b", "c/d"],
            "path": [str(base / "x.jpg"), str(base / "y.jpg")],
            "label": ["offensive", "ok"],
            "source": ["primary", "external:icons"],
            "sha256": ["00" * 32, "ff" * 32],
            "phash": ["0" * 64, "1e10" + "0" * 60],  # would parse as numbers if not kept as text
            "group_id": [0, 1],
            "split": ["test", "train"],
            "width": [10, 20],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = manifest_frame(tmp_path)
    path = write_manifest(frame, tmp_path / "out" / f"split{suffix}", columns=MANIFEST_COLUMNS)
    back = read_manifest(path)
    assert list(back.columns) == [*MANIFEST_COLUMNS, "origin", "width"]  # known columns first
    assert back["phash"].tolist() == frame["phash"].tolist()
    assert back["sha256"].tolist() == frame["sha256"].tolist()
    assert back["group_id"].tolist() == [0, 1] and back["width"].tolist() == [10, 20]
    assert list((tmp_path / "out").iterdir()) == [path]  # no temporary file left behind


def test_relative_paths_resolve_against_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\nimgs/a.jpg,ok\n/abs/b.jpg,offensive\n")
    frame = read_manifest(tmp_path / "m.csv", columns=("path", "label"))
    assert frame["path"].tolist() == [str(tmp_path / "imgs" / "a.jpg"), "/abs/b.jpg"]


def test_errors_say_what_to_fix(tmp_path: Path) -> None:
    frame = manifest_frame(tmp_path)
    path = tmp_path / "m.csv"
    frame.drop(columns="split").to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['split'\].*photosieve split"):
        read_manifest(path)
    assert len(read_manifest(path, columns=INGESTED_COLUMNS)) == 2
    frame.assign(label=["offensive", "spam"]).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"unknown label\(s\) \['spam'\]"):
        read_manifest(path)
    frame.assign(split=["test", "holdout"]).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"unknown split\(s\) \['holdout'\]"):
        read_manifest(path)
    frame.assign(source=["primary", "icons"]).to_csv(path, index=False)
    with pytest.raises(ManifestError, match="external:<name>"):
        read_manifest(path)
    frame.assign(path=[frame["path"][0]] * 2).to_csv(path, index=False)
    with pytest.raises(ManifestError, match="more than once"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match=r"use \.csv or \.parquet"):
        write_manifest(frame, tmp_path / "m.xlsx")


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = write_manifest(manifest_frame(tmp_path), tmp_path / "m.csv")
    before = path.read_bytes()
    with pytest.raises(ManifestError):
        write_manifest(manifest_frame(tmp_path).assign(label="spam"), path)
    assert path.read_bytes() == before

"""Ingest from folders and manifests: every reject reason, nothing dropped silently."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data.conftest import SavePhoto
from photosieve.data.ingest import REJECT_REASONS, collect_manifest, ingest
from photosieve.data.manifest import ManifestError
from photosieve.records import sha256_file


def _reasons(rejected: pd.DataFrame) -> dict[str, str]:
    return {Path(p).name: r for p, r in zip(rejected["path"], rejected["reason"], strict=True)}


def test_folder_ingest_with_reject_reasons(tmp_path: Path, save_photo: SavePhoto) -> None:
    good = [
        save_photo(tmp_path / "offensive" / "gun.jpg", seed=1),
        save_photo(tmp_path / "ok" / "cat.png", seed=2, fmt="PNG"),
        save_photo(tmp_path / "ok" / "nested" / "dog.webp", seed=3, fmt="WEBP"),
    ]
    save_photo(tmp_path / "maybe" / "odd.jpg", seed=4)  # unknown label folder
    save_photo(tmp_path / "loose.jpg", seed=5)  # outside any label folder
    truncated = save_photo(tmp_path / "ok" / "cut.jpg", seed=6)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (tmp_path / "ok" / "notes.txt").write_text("not a photo")
    (tmp_path / "ok" / "empty.jpg").write_bytes(b"")

    result = ingest(tmp_path, workers=2)

    assert sorted(result.accepted["path"]) == sorted(str(p) for p in good)
    assert len(result.accepted) + len(result.rejected) == 8  # nothing dropped silently
    assert _reasons(result.rejected) == {
        "odd.jpg": "unknown_label",
        "loose.jpg": "unknown_label",
        "cut.jpg": "unreadable_image",
        "notes.txt": "unreadable_image",
        "empty.jpg": "unreadable_image",
    }
    details = dict(
        zip(
            result.rejected["path"].map(lambda p: Path(p).name),
            result.rejected["detail"],
            strict=True,
        )
    )
    assert details["cut.jpg"].startswith("truncated")
    assert details["notes.txt"].startswith("not_an_image")
    assert details["empty.jpg"].startswith("empty")
    row = result.accepted.set_index("path").loc[str(good[0])]
    assert row["label"] == "offensive" and row["source"] == "primary"
    assert row["sha256"] == sha256_file(good[0])
    assert len(row["phash"]) == 64
    assert set(result.rejected["reason"]) <= set(REJECT_REASONS)


def test_folder_label_names_and_source_are_configurable(
    tmp_path: Path, save_photo: SavePhoto
) -> None:
    save_photo(tmp_path / "NSFW" / "a.jpg", seed=1)
    save_photo(tmp_path / "sfw" / "b.jpg", seed=2)
    save_photo(tmp_path / "ok" / "c.jpg", seed=3)  # "ok" is not a label under these names
    result = ingest(
        tmp_path, positive_name="nsfw", negative_name="sfw", source_name="external:anime-forum"
    )
    labels = dict(
        zip(
            result.accepted["path"].map(lambda p: Path(p).name),
            result.accepted["label"],
            strict=True,
        )
    )
    assert labels == {"a.jpg": "offensive", "b.jpg": "ok"}
    assert set(result.accepted["source"]) == {"external:anime-forum"}
    assert _reasons(result.rejected) == {"c.jpg": "unknown_label"}
    with pytest.raises(ValueError, match="external:<name>"):
        ingest(tmp_path, source_name="anime-forum")
    with pytest.raises(ValueError, match="both"):
        ingest(tmp_path, positive_name="ok", negative_name="OK")


def test_csv_manifest_with_every_reject_reason(tmp_path: Path, save_photo: SavePhoto) -> None:
    images = tmp_path / "images"
    save_photo(images / "a.jpg", seed=1)
    save_photo(images / "b.jpg", seed=2)
    save_photo(images / "c.jpg", seed=3)
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    rows = [
        ("images/a.jpg", "offensive", "primary", "caltech/revolver"),
        ("images/b.jpg", "ok", "", "caltech/ferry"),  # empty source → primary
        ("images/c.jpg", "OK", "external:icons", "icons/x"),  # label case-insensitive
        ("images/missing.jpg", "ok", "primary", "caltech/x"),  # missing_file
        ("images/bad.jpg", "ok", "primary", "caltech/x"),  # unreadable_image
        ("images/a.jpg", "offensive", "primary", "again"),  # duplicate_path
        ("./images/b.jpg", "ok", "primary", "again"),  # duplicate_path, spelled differently
        ("images/c.jpg", "nsfw", "primary", "caltech/x"),  # unknown_label
        ("images/c.jpg", "ok", "elsewhere", "caltech/x"),  # bad_source
    ]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label", "source", "origin"]).to_csv(manifest, index=False)

    result = ingest(manifest, workers=2)

    accepted = result.accepted.set_index(result.accepted["path"].map(lambda p: Path(p).name))
    assert list(accepted.index) == ["a.jpg", "b.jpg", "c.jpg"]
    assert accepted["source"].tolist() == ["primary", "primary", "external:icons"]
    assert accepted["label"].tolist() == ["offensive", "ok", "ok"]
    assert accepted["origin"].tolist() == ["caltech/revolver", "caltech/ferry", "icons/x"]
    assert all(Path(p).is_absolute() for p in result.accepted["path"])
    rejected = result.rejected
    assert rejected["row"].tolist() == [4, 5, 6, 7, 8, 9]
    assert rejected["reason"].tolist() == [
        "missing_file",
        "unreadable_image",
        "duplicate_path",
        "duplicate_path",
        "unknown_label",
        "bad_source",
    ]
    assert rejected["origin"].tolist()[2] == "again"  # extra columns kept in rejects too
    assert "nsfw" in rejected["detail"].iloc[4]


def test_parquet_manifest_without_source_column(tmp_path: Path, save_photo: SavePhoto) -> None:
    photo = save_photo(tmp_path / "x" / "a.jpg", seed=1)
    manifest = tmp_path / "m.parquet"
    other = save_photo(tmp_path / "x" / "b.jpg", seed=2)
    frame = pd.DataFrame(
        {"path": [str(photo), str(other)], "label": ["ok", "offensive"], "user_id": ["u1", None]}
    )
    frame.to_parquet(manifest)
    result = ingest(manifest)
    assert result.accepted["source"].tolist() == ["primary", "primary"]
    assert result.accepted["user_id"].tolist() == ["u1", ""]
    with_source = frame.assign(source=[None, "external:x"])
    with_source.to_parquet(manifest)
    assert ingest(manifest).accepted["source"].tolist() == ["primary", "external:x"]


def test_bad_manifests_are_explained(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("file,class\na.jpg,ok\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['path', 'label'\]"):
        ingest(bad)
    with pytest.raises(ValueError, match="nothing to ingest"):
        ingest(tmp_path / "nope")
    other = tmp_path / "m.json"
    other.write_text("{}")
    with pytest.raises(ManifestError, match=r"use \.csv or \.parquet"):
        ingest(other)


def test_bench_manifest_ingests_as_is(bench_dir: Path, tmp_path: Path) -> None:
    """The real manifest reads as is (relative paths resolve); a sample of it ingests cleanly."""
    rows = collect_manifest(bench_dir / "manifest.csv")
    assert len(rows) > 10_000
    assert list(rows.columns) == ["path", "label", "source", "origin"]
    assert all(Path(p).is_file() for p in rows["path"].iloc[::500])
    sample = tmp_path / "sample.csv"
    rows.iloc[::400].to_csv(sample, index=False)  # absolute paths now
    result = ingest(sample, workers=2)
    assert len(result.accepted) == len(rows.iloc[::400]) and result.rejected.empty
    assert list(result.accepted.columns[:6]) == [
        "path",
        "label",
        "source",
        "sha256",
        "phash",
        "group_id",
    ]
    assert set(result.accepted["source"]) == {"primary", "external:icons"}

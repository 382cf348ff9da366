"""`photosieve ingest` and `photosieve split` end to end on drawn photos."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from data.conftest import SavePhoto, draw_scene
from photosieve.cli import app
from photosieve.data.manifest import read_manifest


def test_ingest_then_split(tmp_path: Path, save_photo: SavePhoto) -> None:
    images = tmp_path / "photos"
    for seed in range(40):
        save_photo(images / f"p{seed}.jpg", seed=seed)
    save_photo(images / "p0_copy.jpg", image=draw_scene(0).resize((80, 60)), quality=70)
    (images / "broken.jpg").write_bytes(b"nope")
    rows = [(f"photos/p{s}.jpg", "bad" if s % 4 == 0 else "good", "primary") for s in range(30)]
    rows += [(f"photos/p{s}.jpg", "good", "external:forum") for s in range(30, 40)]
    rows += [
        ("photos/p0_copy.jpg", "good", "primary"),  # conflicts with p0 (bad)
        ("photos/broken.jpg", "good", "primary"),
        ("photos/gone.jpg", "good", "primary"),
        ("photos/p1.jpg", "good", "primary"),
        ("photos/p2.jpg", "meh", "primary"),
    ]
    manifest = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label", "source"]).to_csv(manifest, index=False)
    out = tmp_path / "work" / "ingested.csv"
    runner = CliRunner(env={"COLUMNS": "200"})

    done = runner.invoke(
        app,
        ["ingest", str(manifest), "--out", str(out), "--positive-name", "bad",
         "--negative-name", "good", "--workers", "2"],
    )  # fmt: skip

    assert done.exit_code == 0, done.output
    for text in ("missing_file", "unreadable_image", "duplicate_path", "unknown_label"):
        assert text in done.output
    assert "conflicting labels" in done.output
    ingested = read_manifest(out, columns=("path", "label", "group_id"))
    assert len(ingested) == 41
    rejects = pd.read_csv(tmp_path / "work" / "ingested.rejects.csv")
    assert sorted(rejects["reason"]) == [
        "duplicate_path", "missing_file", "unknown_label", "unreadable_image",
    ]  # fmt: skip
    conflicts = pd.read_csv(tmp_path / "work" / "ingested.conflicts.csv")
    assert sorted(Path(p).name for p in conflicts["path"]) == ["p0.jpg", "p0_copy.jpg"]

    split_out = tmp_path / "work" / "split.parquet"
    args = ["split", str(out), "--out", str(split_out), "--seed", "4",
            "--fractions", "train=0.4,validation=0.2,calibration=0.2,test=0.2"]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "certifiable" in done.output and "short" in done.output
    result = read_manifest(split_out)
    assert set(result.loc[result["source"] != "primary", "split"]) == {"train"}
    sidecar = json.loads((tmp_path / "work" / "split.json").read_text())
    assert sidecar["fingerprint"] in done.output
    assert sidecar["positives_needed"] == 299 and sidecar["seed"] == 4
    again = runner.invoke(app, args)
    assert (
        json.loads((tmp_path / "work" / "split.json").read_text())["fingerprint"]
        == (sidecar["fingerprint"])
    )
    assert again.exit_code == 0


def test_bad_fractions_exit_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f"path,label,source,sha256,phash,group_id\n/a.jpg,ok,primary,{'0' * 64},"
                    f"{'0' * 64},0\n")  # fmt: skip
    runner = CliRunner(env={"COLUMNS": "200"})
    done = runner.invoke(app, ["split", str(path), "--fractions", "train=2"])
    assert done.exit_code == 1
    assert "error: split fractions must sum to 1" in done.output
    done = runner.invoke(app, ["split", str(path)])  # no positives: nothing to plan for
    assert done.exit_code == 1 and "no primary positives" in done.output
    done = runner.invoke(app, ["ingest", str(tmp_path / "absent")])
    assert done.exit_code == 1 and "nothing to ingest" in done.output

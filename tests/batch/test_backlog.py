"""`photosieve score`: a backlog scored to Parquet, bad files listed, resumable after a kill,
and the Ray engine giving the local engine's bands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from drawing import draw_photo, encode
from import_check import loaded_on_import
from photosieve.batch.job import BacklogConfig, score_backlog
from photosieve.bundle import ModelBundle
from photosieve.cli import app
from photosieve.learn.head import LogisticHead
from photosieve.policy.bands import DecisionPolicy
from photosieve.scoring import Scorer
from photosieve.vision.embed import Embedder
from photosieve.vision.preprocess import load_image

PLAIN = "efficientnet_lite0"  # the lighter backbone keeps these tests quick


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "photosieve-vision-work"  # ONNX export shared


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backlog")
    for i in range(36):
        folder = root / f"batch{i % 3}"
        folder.mkdir(exist_ok=True)
        shape = "circle" if i % 2 else "square"
        (folder / f"{i:03d}.jpg").write_bytes(encode(draw_photo(i, shape=shape), quality=90))
    good = encode(draw_photo(99), quality=90)
    (root / "batch1" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "batch2" / "notes.png").write_bytes(b"not an image at all")
    return root


@pytest.fixture(scope="module")
def bundle_path(workdir: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    embedder = Embedder(PLAIN, workdir=workdir, threads=1)
    files = sorted(photos.rglob("[0-9]*.jpg"))
    X = embedder.embed_images([load_image(p) for p in files])
    y = np.array([int(p.stem) % 2 for p in files])
    bundle = ModelBundle(
        LogisticHead(C=10.0).fit(X, y),
        backbone_id=embedder.config.id,
        preprocess=embedder.config.preprocess,
        policy=DecisionPolicy(approve_below=0.3, remove_at=0.7),
    )
    return bundle.save(tmp_path_factory.mktemp("bundle") / "bundle")


def test_local_engine_scores_every_photo_and_lists_bad_files(
    photos: Path, bundle_path: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    out = tmp_path / "scores.parquet"
    summary = score_backlog(photos, bundle_path, out, BacklogConfig(chunk_size=8, workers=2))
    frame = pd.read_parquet(out)
    assert summary.photos == len(frame) == 38 and summary.failed == 2
    assert not (tmp_path / "scores.parquet.parts").exists()
    bad = frame[frame["error"] != ""]
    bad.index = pd.Index([Path(p).name for p in bad["path"]])
    assert set(bad.index) == {"truncated.jpg", "notes.png"}
    assert bad.loc["notes.png", "error"].startswith("not_an_image")
    assert bad["score"].isna().all() and (bad["decision"] == "").all()
    good = frame[frame["error"] == ""]
    bundle = ModelBundle.load(bundle_path)
    expected = Scorer(bundle, Embedder(PLAIN, workdir=workdir, threads=1)).score_paths(
        [Path(p) for p in good["path"]]
    )
    np.testing.assert_allclose(good["score"], [s.score for s in expected], atol=1e-5)
    assert list(good["decision"]) == [s.decision.value for s in expected]
    assert set(frame["model_version"]) == {bundle.version}
    assert sum(summary.by_decision.values()) == 36


def test_local_engine_streams_batches_across_chunk_boundaries(
    photos: Path, bundle_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding runs ahead across chunks: every chunk still gets exactly its own rows, in order
    (an empty chunk an empty frame), the same as scoring each chunk alone."""
    from photosieve.batch.engines import LocalEngine

    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    paths = sorted(str(p) for p in photos.rglob("*") if p.is_file())
    chunks = [paths[:5], [], paths[5:6], paths[6:19], paths[19:]]
    engine = LocalEngine(ModelBundle.load(bundle_path), batch_size=3, workers=2)
    try:
        streamed = list(engine.score_chunks(iter(chunks)))
        alone = [engine.score(chunk) for chunk in chunks]
    finally:
        engine.close()
    assert [list(f["path"]) for f in streamed] == chunks
    for got, want in zip(streamed, alone, strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_a_killed_run_resumes_to_the_same_file(
    photos: Path, bundle_path: Path, workdir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PHOTOSIEVE_WORKDIR": str(workdir)}
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    args = ["--bundle", str(bundle_path), "--chunk-size", "4", "--workers", "1"]
    command = [sys.executable, "-m", "photosieve", "score", str(photos), *args]
    subprocess.run([*command, "--out", str(whole)], env=env, check=True, capture_output=True)

    run = subprocess.Popen([*command, "--out", str(resumed)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    parts = tmp_path / "resumed.parquet.parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("0*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(run.pid)  # its decoding processes
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(Path(f"/proc/{pid}").exists() for pid in workers)  # no orphans
    finished = len(list(parts.glob("0*.parquet")))
    assert 3 <= finished < 10 and not resumed.exists()  # killed half-way

    again = CliRunner().invoke(app, ["score", str(photos), *args, "--out", str(resumed)], env=env)
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_parquet(resumed), pd.read_parquet(whole))


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_parts_of_another_job_are_not_reused(
    photos: Path, bundle_path: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    parts = tmp_path / "s.parquet.parts"
    parts.mkdir()
    (parts / "job.json").write_text('{"bundle_version": "other", "chunk_size": 8}')
    with pytest.raises(ValueError, match="another job"):
        score_backlog(photos, bundle_path, tmp_path / "s.parquet", BacklogConfig(chunk_size=8))


@pytest.mark.slow
def test_ray_engine_gives_the_local_bands(
    photos: Path, bundle_path: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    local = score_backlog(photos, bundle_path, tmp_path / "local.parquet",
                          BacklogConfig(chunk_size=16, workers=1))  # fmt: skip
    on_ray = score_backlog(photos, bundle_path, tmp_path / "ray.parquet",
                           BacklogConfig(chunk_size=16, engine="ray", workers=2))  # fmt: skip
    a, b = pd.read_parquet(local.out), pd.read_parquet(on_ray.out)
    assert list(a["path"]) == list(b["path"])
    assert list(a["decision"]) == list(b["decision"]) and list(a["error"]) == list(b["error"])
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)


@pytest.mark.slow
def test_the_local_ray_runs_its_workers_at_normal_priority(
    bundle_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's default puts workers at nice 15, behind the driver and Ray's own daemons."""
    ray = pytest.importorskip("ray")
    from photosieve.batch.ray_engine import WORKER_NICENESS, RayEngine

    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    engine = RayEngine(bundle_path, workdir=workdir)
    try:
        niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        engine.close()
    assert niceness == WORKER_NICENESS == 0


def test_a_scoring_worker_starts_without_scikit_learn() -> None:
    """Each worker process imports the engine module before its first photo; scikit-learn (and
    the scipy it pulls in, ~1 s a worker) is for training and measuring only."""
    assert loaded_on_import("photosieve.batch.engines", {"sklearn", "scipy"}) == []

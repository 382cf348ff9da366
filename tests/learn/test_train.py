"""The train stage on a small split manifest: bundle contents, metrics, save → load → scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drawing import drawn_split_manifest
from photosieve.bundle import ModelBundle
from photosieve.data.split import data_fingerprint
from photosieve.data.split import data_fingerprint as split_fingerprint
from photosieve.evaluate.diagnose import diagnose_bundle
from photosieve.learn.train import TrainConfig
from photosieve.pipeline import train_bundle


def make_split(tmp_path: Path, n: int = 400, d: int = 24) -> tuple[Path, np.ndarray]:
    """A split manifest CSV over n rows plus aligned embeddings (offensive = one direction)."""
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(n) < 0.25, "offensive", "ok")
    splits = rng.choice(
        ["train", "train_dev", "validation", "calibration", "test"], n, p=[0.6, 0.1, 0.1, 0.1, 0.1]
    )
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[labels == "offensive", 0] += 3.0
    frame = pd.DataFrame(
        {
            "path": [str(tmp_path / f"img{i}.jpg") for i in range(n)],
            "label": labels,
            "source": "primary",
            "sha256": [f"{i:064x}" for i in range(n)],
            "phash": "0" * 16,
            "group_id": np.arange(n),
            "split": splits,
        }
    )
    path = tmp_path / "split.csv"
    frame.to_csv(path, index=False)
    return path, X


def test_train_bundle_end_to_end(tmp_path: Path) -> None:
    manifest, X = make_split(tmp_path)
    cfg = TrainConfig(hidden=(16,), epochs=30, ensemble=2, batch_size=64, lr=1e-2, dropout=0.1,
                      train_mirror=False)  # fmt: skip  # embeddings without photos: none to mirror
    epochs_seen: list[int] = []
    outcome = train_bundle(manifest, cfg, embeddings=X, on_epoch=lambda e, r: epochs_seen.append(e))
    bundle = outcome.bundle
    assert len(epochs_seen) > 2 and outcome.warnings == []
    assert bundle.train_config["hidden"] == [16] and bundle.train_config["ensemble"] == 2
    assert bundle.backbone_id and bundle.preprocess.input_size > 0
    # the same print `photosieve split` wrote for this manifest: one id for one data set
    assert bundle.data_fingerprint == split_fingerprint(pd.read_csv(manifest))
    splits = bundle.metrics["splits"]
    assert set(splits) == {"train", "train_dev", "validation", "calibration", "test"}
    assert splits["test"]["average_precision"] > 0.9
    assert splits["validation"]["recall_at_operating"] >= 0.99
    assert bundle.metrics["gradient_health"]["vanishing"] is False

    saved = bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(saved)
    np.testing.assert_array_equal(loaded.score_embeddings(X), bundle.score_embeddings(X))
    assert json.dumps(loaded.metrics, sort_keys=True) == json.dumps(bundle.metrics, sort_keys=True)

    diagnosis = diagnose_bundle(loaded, manifest, embeddings=X)
    assert diagnosis.operating.threshold == pytest.approx(bundle.metrics["operating_threshold"])
    assert diagnosis.largest in {
        "avoidable_bias",
        "variance",
        "data_mismatch",
        "validation_overfit",
    }


def test_fingerprint_depends_on_content_not_order(tmp_path: Path) -> None:
    manifest, _ = make_split(tmp_path, n=50)
    frame = pd.read_csv(manifest)
    assert data_fingerprint(frame) == data_fingerprint(frame.iloc[::-1])
    changed = frame.copy()
    changed.loc[0, "label"] = "ok" if changed.loc[0, "label"] == "offensive" else "offensive"
    assert data_fingerprint(changed) != data_fingerprint(frame)


def test_manifest_without_validation_is_refused(tmp_path: Path) -> None:
    manifest, X = make_split(tmp_path, n=60)
    frame = pd.read_csv(manifest)
    frame.loc[frame["split"] == "validation", "split"] = "train"
    frame.to_csv(manifest, index=False)
    with pytest.raises(ValueError, match="no rows with split 'validation'"):
        train_bundle(manifest, TrainConfig(epochs=1, ensemble=1, train_mirror=False), embeddings=X)


def test_the_head_also_trains_on_the_training_photos_mirrored(tmp_path: Path) -> None:
    """`train_mirror` embeds the `train` rows' photos flipped (cached apart) and adds them to the
    head's training rows only: validation and the served scores use the photos as they are."""
    splits = ("train", "train", "train", "validation", "calibration")
    (tmp_path / "photos").mkdir()
    manifest = drawn_split_manifest(
        tmp_path / "photos", 40, splits, offensive=lambda i: i % 3 == 0, size=lambda i: (150, 120)
    )
    plain = "efficientnet_lite0"  # the lighter backbone keeps this quick
    heads = {}
    for mirror in (False, True):
        work = tmp_path / f"work-{mirror}"
        cfg = TrainConfig(hidden=(8,), epochs=3, ensemble=1, backbone=plain, train_mirror=mirror)
        bundle = train_bundle(manifest, cfg, workdir=work, progress=False).bundle
        assert bundle.train_config["train_mirror"] is mirror
        folders = sorted(d.name for d in (work / "embeddings").iterdir())
        mirrored = [f for f in folders if f.endswith("-mirror")]
        assert mirrored == ([f"{bundle.backbone_id}-mirror"] if mirror else [])
        if mirror:  # exactly the 24 training photos, each once
            shards = (work / "embeddings" / mirrored[0]).glob("*.keys.npy")
            assert sum(len(np.load(k)) for k in shards) == 24
        heads[mirror] = bundle.head
    X = np.random.default_rng(1).normal(size=(8, 1280)).astype(np.float32)
    assert not np.allclose(heads[True].decision_function(X), heads[False].decision_function(X))

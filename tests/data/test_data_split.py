"""Split planner: groups kept whole, stratified, external photos in training only, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.conftest import SavePhoto, draw_scene
from photosieve.data.ingest import ingest
from photosieve.data.plan import parse_fractions
from photosieve.data.split import assign_splits, data_fingerprint, split_manifest
from photosieve.records import Split

HELD_OUT = {Split.VALIDATION.value, Split.CALIBRATION.value, Split.TEST.value}
TRAINING = {Split.TRAIN.value, Split.TRAIN_DEV.value}


def synthetic(
    n_primary: int = 3000,
    n_external: int = 800,
    *,
    positive_share: float = 0.085,
    group_share: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows like `photosieve ingest` output; some rows join the previous row's group."""
    rng = np.random.default_rng(seed)
    n = n_primary + n_external
    source = ["primary"] * n_primary + ["external:forum"] * n_external
    share = np.where(np.arange(n) < n_primary, positive_share, 0.01)
    label = np.where(rng.random(n) < share, "offensive", "ok")
    joins = rng.random(n) < group_share
    joins[[0, n_primary % n]] = False  # groups never mix sources here
    group_id = np.cumsum(~joins) - 1
    label[joins] = label[np.flatnonzero(joins) - 1]  # copies carry their original's label
    return pd.DataFrame(
        {
            "path": [f"/photos/{i}.jpg" for i in range(n)],
            "label": label,
            "source": source,
            "sha256": [f"{i:064x}" for i in range(n)],
            "phash": ["0" * 64] * n,
            "group_id": group_id,
        }
    )


def check_stratified(manifest: pd.DataFrame) -> None:
    primary = manifest[manifest["source"] == "primary"]
    share = (primary["label"] == "offensive").mean()
    for split, part in primary.groupby("split"):
        positives = int((part["label"] == "offensive").sum())
        assert abs(positives - share * len(part)) <= 1.0, (split, positives, len(part), share)


def test_stratified_grouped_and_external_in_training_only() -> None:
    frame = synthetic()
    result = split_manifest(frame, seed=3)
    manifest = result.manifest
    assert manifest["split"].isin([s.value for s in Split]).all()
    assert (manifest.groupby("group_id")["split"].nunique() == 1).all()
    assert set(manifest.loc[manifest["source"] != "primary", "split"]) == TRAINING
    check_stratified(manifest)
    # train_dev mirrors the training mix: its external share is train's (within a few photos).
    training = manifest[manifest["split"].isin(TRAINING)]
    external_share = training.groupby("split")["source"].apply(lambda s: (s != "primary").mean())
    assert external_share["train"] == pytest.approx(external_share["train_dev"], abs=0.03)


def test_external_can_be_kept_out_of_train_dev() -> None:
    manifest = split_manifest(synthetic(), external_in_train_dev=False).manifest
    assert set(manifest.loc[manifest["source"] != "primary", "split"]) == {"train"}
    check_stratified(manifest)


def test_explicit_fractions_are_followed() -> None:
    frame = synthetic(n_external=0, group_share=0.0)
    fractions = parse_fractions("train=0.6,train_dev=0.05,validation=0.1,calibration=0.15,test=0.1")
    result = split_manifest(frame, fractions=fractions)
    counts = result.manifest["split"].value_counts()
    for split, fraction in fractions.items():
        assert counts.get(split.value, 0) == pytest.approx(fraction * len(frame), abs=1.5)


def test_same_seed_same_manifest_other_seed_differs() -> None:
    frame = synthetic()
    a, b = split_manifest(frame, seed=7), split_manifest(frame.copy(), seed=7)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    assert a.fingerprint == b.fingerprint == data_fingerprint(b.manifest)
    c = split_manifest(frame, seed=8)
    assert c.fingerprint != a.fingerprint
    # The fingerprint ignores row order and paths: same photos, labels and splits → same value.
    shuffled = a.manifest.sample(frac=1.0, random_state=1).assign(path="elsewhere")
    assert data_fingerprint(shuffled) == a.fingerprint


def test_planner_reports_what_each_split_can_certify() -> None:
    frame = synthetic(n_primary=3000, n_external=0, positive_share=0.1)  # ~300 positives
    result = split_manifest(frame, target_recall=0.99, confidence=0.95)
    summary = result.summary.set_index("split")
    assert result.positives_needed == 299
    # Calibration is capped at half the data: ~150 positives, about 149 short.
    assert summary.loc["calibration", "shortfall"] == 299 - summary.loc["calibration", "positives"]
    assert result.shortfalls[Split.CALIBRATION] > 100
    n = summary.loc["calibration", "positives"]
    assert summary.loc["calibration", "certifiable_recall"] == pytest.approx(0.05 ** (1 / n))
    plenty = split_manifest(synthetic(n_primary=20_000, n_external=0), target_recall=0.95)
    assert Split.CALIBRATION not in plenty.shortfalls


def test_missing_columns_are_explained() -> None:
    with pytest.raises(ValueError, match="photosieve ingest"):
        split_manifest(pd.DataFrame({"path": ["a"], "label": ["ok"], "source": ["primary"]}))


def test_groups_are_computed_when_missing() -> None:
    frame = synthetic(n_primary=200, n_external=0).drop(columns="group_id")
    frame["phash"] = [f"{i:064x}" for i in range(200)]  # hashes 0..199: close ones group
    result = split_manifest(frame, fractions={Split.TRAIN: 0.5, Split.TEST: 0.5})
    assert "group_id" in result.manifest.columns
    assert (result.manifest.groupby("group_id")["split"].nunique() == 1).all()


def test_real_copies_land_in_one_split(tmp_path: Path, save_photo: SavePhoto) -> None:
    """Drawn photos with re-encoded and resized copies, through ingest and split."""
    for seed in range(60):
        label = "offensive" if seed % 5 == 0 else "ok"
        save_photo(tmp_path / label / f"p{seed}.jpg", seed=seed)
    for seed in range(0, 60, 6):
        label = "offensive" if seed % 5 == 0 else "ok"
        scene = draw_scene(seed)
        save_photo(tmp_path / label / f"p{seed}_q50.jpg", image=scene, quality=50)
        save_photo(tmp_path / label / f"p{seed}_half.png", image=scene.resize((80, 60)), fmt="PNG")
    accepted = ingest(tmp_path, workers=2).accepted
    assert accepted["group_id"].nunique() == 60
    fractions = {Split.TRAIN: 0.4, Split.VALIDATION: 0.2, Split.CALIBRATION: 0.2, Split.TEST: 0.2}
    manifest = split_manifest(accepted, fractions=fractions, seed=1).manifest
    stem = manifest["path"].map(lambda p: Path(p).stem.split("_")[0])
    assert (manifest.groupby(stem)["split"].nunique() == 1).all()
    assert manifest["split"].nunique() == 4


@st.composite
def datasets(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[Split, float]]:
    n_groups = draw(st.integers(1, 60))
    rows = []
    for g in range(n_groups):
        size = draw(st.integers(1, 4))
        group_source = draw(st.sampled_from(["primary", "primary", "external:a", "mixed"]))
        for _ in range(size):
            source = group_source
            if group_source == "mixed":
                source = draw(st.sampled_from(["primary", "external:b"]))
            label = draw(st.sampled_from(["offensive", "ok", "ok"]))
            rows.append((f"/p/{len(rows)}.jpg", label, source, f"{len(rows):064x}", g))
    frame = pd.DataFrame(rows, columns=["path", "label", "source", "sha256", "group_id"])
    weights = draw(st.lists(st.integers(0, 10), min_size=5, max_size=5))
    weights[0] += 1  # some train
    fractions = {s: w / sum(weights) for s, w in zip(Split, weights, strict=True)}
    return frame, fractions


@settings(max_examples=60, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2**32 - 1), external_in_dev=st.booleans())
def test_split_invariants(
    data: tuple[pd.DataFrame, dict[Split, float]], seed: int, external_in_dev: bool
) -> None:
    frame, fractions = data
    split = assign_splits(frame, fractions, seed=seed, external_in_train_dev=external_in_dev)
    assert len(split) == len(frame) and split.index.equals(frame.index)
    assert split.isin([s.value for s in Split]).all()  # every photo in exactly one split
    assert (split.groupby(frame["group_id"]).nunique() == 1).all()  # no group straddles splits
    # A group holding any external photo is training data only.
    has_external = frame.groupby("group_id")["source"].transform(lambda s: (s != "primary").any())
    allowed = TRAINING if external_in_dev else {"train"}
    assert set(split[has_external]) <= allowed
    unused = {s.value for s, f in fractions.items() if f == 0}
    assert not set(split) & unused
    again = assign_splits(frame, fractions, seed=seed, external_in_train_dev=external_in_dev)
    assert split.equals(again)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.booleans(), min_size=1, max_size=400),
    seed=st.integers(0, 1000),
)
def test_singletons_stratify_within_one_photo(labels: list[bool], seed: int) -> None:
    n = len(labels)
    frame = pd.DataFrame(
        {
            "label": ["offensive" if x else "ok" for x in labels],
            "source": "primary",
            "group_id": range(n),
        }
    )
    fractions = parse_fractions("train=0.5,train_dev=0.05,validation=0.1,calibration=0.25,test=0.1")
    manifest = frame.assign(split=assign_splits(frame, fractions, seed=seed))
    check_stratified(manifest)

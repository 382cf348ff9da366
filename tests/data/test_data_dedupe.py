"""Duplicate groups: exact copies, re-encoded and resized copies, conflicts, the pair search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.conftest import SavePhoto, draw_scene
from photosieve.data.dedupe import (
    NEAR_DUPLICATE_DISTANCE,
    conflicting_groups,
    duplicate_groups,
    hamming,
    hashes_to_uint64,
    near_pairs,
    perceptual_hash,
)
from photosieve.data.ingest import ingest
from photosieve.vision.preprocess import load_image


def test_copies_share_a_group_distinct_photos_do_not(tmp_path: Path, save_photo: SavePhoto) -> None:
    original = draw_scene(7)
    paths = [
        save_photo(tmp_path / "ok" / "a.jpg", image=original, quality=90),
        save_photo(tmp_path / "ok" / "a_copy.jpg", image=original, quality=90),  # same bytes
        save_photo(tmp_path / "ok" / "a_q50.jpg", image=original, quality=50),  # re-encoded
        save_photo(tmp_path / "ok" / "a_small.png", image=original.resize((80, 60)), fmt="PNG"),
        save_photo(tmp_path / "ok" / "a_big.webp", image=original.resize((320, 240)), fmt="WEBP"),
    ]
    for seed in range(8):
        paths.append(save_photo(tmp_path / "ok" / f"other{seed}.jpg", seed=100 + seed))
    result = ingest(tmp_path, workers=2)
    groups = dict(zip(result.accepted["path"], result.accepted["group_id"], strict=True))
    copies = {groups[str(p)] for p in paths[:5]}
    assert len(copies) == 1
    others = [groups[str(p)] for p in paths[5:]]
    assert len(set(others)) == 8 and copies.isdisjoint(others)
    assert result.groups.exact_pairs == 1
    assert result.groups.n_groups == 9


def test_perceptual_hash_is_256_bits_and_robust() -> None:
    image = draw_scene(3)
    text = perceptual_hash(image)
    assert len(text) == 64 and int(text, 16) >= 0
    from drawing import encode

    copy = load_image(encode(image.resize((80, 60)), "JPEG", quality=60))
    a, b = hashes_to_uint64([text, perceptual_hash(copy)])
    assert hamming(a, b) <= NEAR_DUPLICATE_DISTANCE // 2


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(300, 4), dtype=np.uint64)
    # Plant near copies: flip a few random bits of some rows.
    copies = base[:40].copy()
    for row in copies:
        for _ in range(int(rng.integers(0, 20))):
            word, bit = rng.integers(0, 4), rng.integers(0, 64)
            row[word] ^= np.uint64(1) << np.uint64(bit)
    hashes = np.concatenate([base, copies])
    i, j = near_pairs(hashes, 24)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    distance = hamming(hashes[:, None, :], hashes[None, :, :])
    want = {(a, b) for a, b in zip(*np.nonzero(distance <= 24), strict=True) if a < b}
    assert got == want
    assert len(want) >= 40


def test_groups_are_transitive_and_numbered_by_first_appearance() -> None:
    a = "0" * 64
    b = "f" * 4 + "0" * 60  # 16 bits from a
    c = "f" * 8 + "0" * 56  # 16 bits from b, 32 from a: joined to a only through b
    d = "f" * 64
    groups = duplicate_groups(["s1", "s2", "s3", "s4", "s1"], [d, a, b, c, d], max_distance=20)
    assert groups.group_id.tolist() == [0, 1, 1, 1, 0]
    assert groups.exact_pairs == 1


def test_malformed_hash_and_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        hashes_to_uint64(["abc"])
    with pytest.raises(ValueError, match="2 SHA-256 digests but 1"):
        duplicate_groups(["a", "b"], ["0" * 64])
    with pytest.raises(ValueError, match="max_distance"):
        near_pairs(np.zeros((2, 4), dtype=np.uint64), -1)


def test_conflicting_labels_are_reported(tmp_path: Path, save_photo: SavePhoto) -> None:
    scene = draw_scene(11)
    save_photo(tmp_path / "offensive" / "x.jpg", image=scene, quality=90)
    save_photo(tmp_path / "ok" / "x_resized.jpg", image=scene.resize((120, 90)), quality=80)
    save_photo(tmp_path / "ok" / "y.jpg", seed=12)
    save_photo(tmp_path / "ok" / "y_copy.jpg", seed=12)  # same label: no conflict
    result = ingest(tmp_path, workers=1)
    conflicts = result.conflicts
    assert sorted(Path(p).name for p in conflicts["path"]) == ["x.jpg", "x_resized.jpg"]
    assert set(conflicts["label"]) == {"offensive", "ok"}
    assert conflicts["group_id"].nunique() == 1
    assert conflicting_groups(pd.DataFrame(columns=["group_id", "label"])).empty

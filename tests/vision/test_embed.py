"""`embed_files`: cached by file content and backbone id, aligned with the input, safe to stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from photosieve.cli import app
from photosieve.vision.cache import EmbeddingCache
from photosieve.vision.embed import Embedder, embed_files, image_paths
from photosieve.vision.preprocess import ImageDecodeError, load_image


@pytest.fixture
def photos(tmp_path: Path, photo_factory: Callable[..., Image.Image]) -> list[Path]:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    paths = []
    for i in range(7):
        path = folder / ("sub" if i % 2 else "") / f"p{i}.{'png' if i == 3 else 'jpg'}"
        photo_factory(i, (120 + 10 * i, 90), shape="circle" if i % 3 else "square").save(path)
        paths.append(path)
    return paths


def test_second_run_is_served_from_the_cache(
    photos: list[Path], embedder: Embedder, vision_workdir: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    before = embedder.batches_run
    stats: dict[str, float] = {}
    first = embed_files(
        photos, workdir=workdir, batch_size=3, progress=False, embedder=embedder, stats=stats
    )
    assert first.shape == (7, 1280) and first.dtype == np.float32
    assert embedder.batches_run - before == 3  # 7 photos in batches of 3
    assert stats["computed"] == 7 and stats["cached"] == 0
    # Aligned with the input: each row is that photo's embedding.
    expected = embedder.embed_images([load_image(p) for p in photos])
    np.testing.assert_allclose(first, expected, atol=1e-5)

    before = embedder.batches_run
    again = embed_files(
        photos[::-1], workdir=workdir, progress=False, embedder=embedder, stats=stats
    )
    assert embedder.batches_run == before  # no model work at all
    assert stats["cached"] == 7 and stats["computed"] == 0
    np.testing.assert_array_equal(again, first[::-1])
    assert (workdir / "embeddings" / embedder.config.id).is_dir()


def test_mirrored_views_embed_the_flipped_photo_and_cache_apart(
    photos: list[Path], embedder: Embedder, tmp_path: Path
) -> None:
    """`mirror=True` embeds each photo flipped left to right (a training view), cached under
    `<id>-mirror`; the plain embeddings and their cache are untouched."""
    workdir = tmp_path / "work"
    plain = embed_files(photos, workdir=workdir, progress=False, embedder=embedder)
    mirrored = embed_files(photos, workdir=workdir, progress=False, embedder=embedder, mirror=True)
    flipped = [ImageOps.mirror(load_image(p)) for p in photos]
    np.testing.assert_allclose(mirrored, embedder.embed_images(flipped), atol=1e-5)
    assert np.abs(mirrored - plain).max() > 1e-3  # the asymmetric shapes embed differently
    root = workdir / "embeddings"
    assert sorted(d.name for d in root.iterdir()) == [
        embedder.config.id,
        f"{embedder.config.id}-mirror",
    ]
    stats: dict[str, float] = {}
    again = embed_files(photos, workdir=workdir, progress=False, embedder=embedder, stats=stats)
    assert stats["cached"] == len(photos)
    np.testing.assert_array_equal(again, plain)


def test_only_new_content_is_embedded_and_duplicates_once(
    photos: list[Path],
    embedder: Embedder,
    tmp_path: Path,
    photo_factory: Callable[..., Image.Image],
) -> None:
    workdir = tmp_path / "work"
    embed_files(photos[:4], workdir=workdir, progress=False, embedder=embedder)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(photos[5].read_bytes())
    new = tmp_path / "new.jpg"
    photo_factory(99).save(new)
    stats: dict[str, float] = {}
    out = embed_files(
        [*photos, copy, new], workdir=workdir, progress=False, embedder=embedder, stats=stats
    )
    assert stats["cached"] == 4 and stats["computed"] == 4  # p4, p5 (= copy), p6, new
    np.testing.assert_array_equal(out[7], out[5])


def test_bad_file_is_named_or_skipped(
    photos: list[Path], embedder: Embedder, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a photo")
    files = [photos[0], bad, photos[1]]
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg") as info:
        embed_files(files, workdir=tmp_path / "w", progress=False, embedder=embedder)
    assert info.value.reason == "not_an_image"
    stats: dict[str, float] = {}
    out = embed_files(
        files,
        workdir=tmp_path / "w",
        progress=False,
        embedder=embedder,
        on_error="nan",
        stats=stats,
    )
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    assert stats["failed"] == 1
    with pytest.raises(ImageDecodeError, match="cannot read"):
        embed_files([tmp_path / "nope.jpg"], workdir=tmp_path / "w", progress=False)


def test_interrupted_shard_is_ignored(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "bb-1", dim=4)
    cache.append(["a" * 64, "b" * 64], np.ones((2, 4), np.float32))
    # A run killed between writing vectors and keys leaves an orphan vectors file.
    np.save(cache.folder / "shard-x-9.npy", np.zeros((9, 4), np.float32))
    (cache.folder / ".tmp-half.npy").write_bytes(b"\x93NUMPY garbage")
    fresh = EmbeddingCache(tmp_path, "bb-1", dim=4)
    found, rows = fresh.lookup(["a" * 64, "c" * 64, "b" * 64])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(rows[[0, 2]], np.ones((2, 4)))
    assert len(fresh) == 2
    with pytest.raises(ValueError, match="shape"):
        fresh.append(["d" * 64], np.ones((2, 4), np.float32))


def test_image_paths_from_folder_and_manifest(photos: list[Path], tmp_path: Path) -> None:
    folder = photos[0].parent
    assert image_paths(folder) == sorted(photos)
    manifest = folder / "manifest.csv"
    rel = [p.relative_to(folder) for p in photos]
    pd.DataFrame({"path": [str(r) for r in rel], "label": "ok"}).to_csv(manifest, index=False)
    assert image_paths(manifest) == photos
    with pytest.raises(ValueError, match="path"):
        (tmp_path / "m.csv").write_text("file\nx.jpg\n")
        image_paths(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="neither"):
        image_paths(tmp_path / "missing")


def test_cli_embeds_a_folder_and_writes_aligned_output(
    photos: list[Path], vision_workdir: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    # Reuse the session's ONNX export instead of exporting again.
    (workdir / "onnx").mkdir(parents=True)
    for f in (vision_workdir / "onnx").glob("*.onnx"):
        (workdir / "onnx" / f.name).symlink_to(f)
    runner = CliRunner()
    folder = photos[0].parent
    args = ["embed", str(folder), "--workdir", str(workdir), "--backbone", "efficientnet_lite0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "computed" in result.output and "7" in result.output
    vectors = np.load(workdir / "embeddings" / "photos.npy")
    listed = (workdir / "embeddings" / "photos.paths.txt").read_text().split()
    assert vectors.shape == (7, 1280) and listed == [str(p) for p in sorted(photos)]
    result = runner.invoke(app, ["embed", str(folder), "--backbone", "resnet"])
    assert result.exit_code != 0 and "known: efficientnet_lite0" in result.output
    result = runner.invoke(app, ["embed", str(tmp_path / "missing"), "--workdir", str(workdir)])
    assert result.exit_code != 0

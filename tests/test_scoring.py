"""`Scorer`: photo → embedding → bundle score → decision, the same way for bytes, images, files."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from photosieve.bundle import ModelBundle
from photosieve.config import DEFAULT_BACKBONE
from photosieve.learn.head import LogisticHead
from photosieve.policy.bands import DecisionPolicy
from photosieve.records import Decision
from photosieve.scoring import ScoredImage, Scorer, backbone_for
from photosieve.vision.embed import Embedder
from photosieve.vision.preprocess import ImageDecodeError, load_image


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _draw(seed: int, *, circle: bool) -> Image.Image:
    """A noisy background with a circle or a square on it."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(0, 255, 3) + rng.normal(0, 12, (80, 96, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    (draw.ellipse if circle else draw.rectangle)((19, 16, 76, 64), fill=colour)
    return image


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    # Same folder as the vision tests' fixture: the ONNX export is made once per session.
    return Embedder(workdir=tmp_path_factory.getbasetemp() / "photosieve-vision-work", threads=1)


@pytest.fixture(scope="module")
def drawn() -> tuple[list[Image.Image], np.ndarray]:
    images = [_draw(i, circle=bool(i % 2)) for i in range(10)]
    labels = np.array([i % 2 for i in range(10)])
    return [load_image(_jpeg(im)) for im in images], labels


@pytest.fixture(scope="module")
def bundle(embedder: Embedder, drawn: tuple[list[Image.Image], np.ndarray]) -> ModelBundle:
    images, labels = drawn
    head = LogisticHead(C=10.0).fit(embedder.embed_images(images), labels)
    return ModelBundle(
        head,
        backbone_id=embedder.config.id,
        preprocess=embedder.config.preprocess,
        policy=DecisionPolicy(approve_below=0.3, remove_at=0.7),
        version="test-v1",
    )


def test_scores_follow_the_head_and_policy(
    bundle: ModelBundle, embedder: Embedder, drawn: tuple[list[Image.Image], np.ndarray]
) -> None:
    images, labels = drawn
    scored = Scorer(bundle, embedder).score_images(images)
    assert all(isinstance(s, ScoredImage) for s in scored)
    scores = np.array([s.score for s in scored])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[labels == 1].min() > scores[labels == 0].max()  # fits its training photos
    assert policy_decisions(bundle, scores) == [s.decision for s in scored]
    assert {s.model_version for s in scored} == {"test-v1"}
    assert Scorer(bundle, embedder).score_images([]) == []


def policy_decisions(bundle: ModelBundle, scores: np.ndarray) -> list[Decision]:
    assert bundle.policy is not None
    return [bundle.policy.decide(float(s)) for s in scores]


def test_bytes_images_and_files_score_alike(
    bundle: ModelBundle,
    embedder: Embedder,
    tmp_path: Path,
    photo_factory: Callable[..., Image.Image],
) -> None:
    scorer = Scorer(bundle, embedder)
    data = _jpeg(photo_factory(42, (300, 260)))
    from_bytes = scorer.score_bytes(data)
    from_image = scorer.score_images([load_image(data, draft_size=224)])[0]
    assert from_bytes.score == pytest.approx(from_image.score, abs=1e-6)
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    (from_file,) = scorer.score_paths([path])
    assert from_file.score == pytest.approx(from_bytes.score, abs=1e-5)
    assert from_file.decision == from_bytes.decision


def test_bad_upload_raises_a_typed_error(bundle: ModelBundle, embedder: Embedder) -> None:
    with pytest.raises(ImageDecodeError) as info:
        Scorer(bundle, embedder).score_bytes(b"GIF89a but not really")
    assert info.value.reason in {"not_an_image", "truncated", "unreadable"}
    with pytest.raises(ImageDecodeError, match="empty"):
        Scorer(bundle, embedder).score_bytes(b"")


def test_no_policy_sends_everything_to_review(
    bundle: ModelBundle, embedder: Embedder, drawn: tuple[list[Image.Image], np.ndarray]
) -> None:
    unpoliced = dataclasses.replace(bundle, policy=None)
    scored = Scorer(unpoliced, embedder).score_images(drawn[0])
    assert {s.decision for s in scored} == {Decision.REVIEW}


def test_saved_bundle_carries_its_version(
    bundle: ModelBundle, embedder: Embedder, tmp_path: Path, jpeg_bytes: bytes
) -> None:
    saved = dataclasses.replace(bundle, version="")
    saved.save(tmp_path / "bundle")
    loaded = ModelBundle.load(tmp_path / "bundle")
    result = Scorer(loaded, embedder).score_bytes(jpeg_bytes)
    assert result.model_version == loaded.version and len(result.model_version) == 12
    assert result.score == pytest.approx(Scorer(bundle, embedder).score_bytes(jpeg_bytes).score)


def test_mismatched_backbone_is_refused(bundle: ModelBundle, embedder: Embedder) -> None:
    other = dataclasses.replace(bundle, backbone_id="efficientnet_lite0-0000000000")
    with pytest.raises(ValueError, match="does not match"):
        Scorer(other, embedder)
    with pytest.raises(ValueError, match="not installed"):
        backbone_for("efficientnet_lite0-0000000000")
    assert backbone_for(embedder.config.id) == DEFAULT_BACKBONE  # the library default
    resized = dataclasses.replace(
        bundle, preprocess=dataclasses.replace(bundle.preprocess, input_size=192)
    )
    with pytest.raises(ValueError, match="preprocessing"):
        Scorer(resized, embedder)


def test_an_animation_is_judged_by_its_most_offensive_frame(
    bundle: ModelBundle, embedder: Embedder, drawn: tuple[list[Image.Image], np.ndarray]
) -> None:
    """A GIF whose first frame is harmless but a later one offensive scores as the offensive
    frame does; with only harmless frames it scores as they do."""
    images, labels = drawn
    harmless, offensive = images[int(np.argmin(labels))], images[int(np.argmax(labels))]
    scorer = Scorer(bundle, embedder)

    def gif(frames: list[Image.Image]) -> bytes:
        buffer = io.BytesIO()
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80)
        return buffer.getvalue()

    hidden = scorer.score_bytes(gif([harmless, harmless, offensive]))
    plain = scorer.score_bytes(gif([harmless, harmless]))
    alone = scorer.score_bytes(gif([offensive, offensive]))
    assert hidden.score == pytest.approx(alone.score, abs=1e-6)
    assert plain.score < 0.5 < hidden.score
    assert hidden.decision != plain.decision

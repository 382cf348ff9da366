"""Model soups (`learn.soup`): the weights' mean, BatchNorm measured again as a cumulative
average over full augmented batches, and the soup built from two real tuning runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from photosieve.learn.finetune import TunedLite0
from photosieve.learn.pixel_finetune import PixelTuneConfig, fine_tune_pixels, score_pixels
from photosieve.learn.soup import average_states, make_soup, reset_batchnorm
from photosieve.vision.preprocess import PreprocessConfig, load_for_model

TINY = PixelTuneConfig(epochs=1, batch_size=8, samples_per_epoch=16, warm_steps=5,
                       keep="last_averaged", init_seed=0)  # fmt: skip
PLAIN = dataclasses.replace(TINY, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter=0.0,
                            low_res_share=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def served(bench_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    """Twelve bench photos (6 offensive, 6 fine) as the served uint8 input, and their labels."""
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    manifest = manifest[manifest["source"] == "primary"]
    rows = pd.concat(
        [manifest[manifest["label"] == lab].iloc[250::500].head(6) for lab in ("offensive", "ok")]
    )
    cfg = PreprocessConfig()
    pixels = np.stack([load_for_model(bench_dir / p, cfg) for p in rows["path"]])
    return torch.from_numpy(pixels), (rows["label"] == "offensive").to_numpy().astype(np.int64)


def test_the_average_is_tensor_by_tensor_and_keeps_integer_buffers() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    soup = average_states([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0])) and int(soup["n"]) == 4
    with pytest.raises(ValueError, match="architecture"):
        average_states([a, {"w": b["w"]}])
    with pytest.raises(ValueError, match="at least one"):
        average_states([])


def test_batchnorm_is_measured_again_as_the_mean_of_full_batches(served) -> None:
    images, _ = served
    model = TunedLite0().eval()
    first = model.backbone._bn0
    assert isinstance(first, nn.BatchNorm2d)
    first.running_mean.fill_(7.0)
    momentum = first.momentum
    seen: list[torch.Tensor] = []
    hook = first.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    cfg = dataclasses.replace(PLAIN, batch_size=5)  # 12 rows: two full batches, 2 left out
    reset_batchnorm(model, images, np.arange(12), cfg, seed=3)
    hook.remove()
    assert [len(x) for x in seen] == [5, 5]  # full batches only
    means = [x.float().mean(dim=(0, 2, 3)) for x in seen]
    torch.testing.assert_close(first.running_mean, (means[0] + means[1]) / 2, atol=1e-4, rtol=1e-4)
    variances = [x.float().var(dim=(0, 2, 3), unbiased=True) for x in seen]
    torch.testing.assert_close(first.running_var, (variances[0] + variances[1]) / 2,
                               atol=1e-3, rtol=1e-3)  # fmt: skip
    assert first.momentum == momentum and not model.training  # as it was, and ready to serve
    few = TunedLite0().eval()
    reset_batchnorm(few, images, np.arange(3), cfg, seed=3)  # fewer rows than a batch: one
    assert int(few.backbone._bn0.num_batches_tracked) == 1


def test_a_soup_of_two_runs_from_one_start_is_their_mean_and_scores(served) -> None:
    images, y = served
    train, val = np.arange(0, 12, 2), np.arange(1, 12, 2)
    runs = [fine_tune_pixels(images, y, train, val, dataclasses.replace(TINY, seed=s))
            for s in (0, 1)]  # fmt: skip
    states = [{k: v.clone() for k, v in r.model.state_dict().items()} for r in runs]
    soup = make_soup(states, images, train, TINY)
    stem = "backbone._conv_stem.weight"
    torch.testing.assert_close(soup.state_dict()[stem], (states[0][stem] + states[1][stem]) / 2)
    hidden = "classifier.1.weight"  # one start: the classifier's units line up, and moved
    assert hidden in soup.state_dict()
    torch.testing.assert_close(
        soup.state_dict()[hidden], (states[0][hidden] + states[1][hidden]) / 2
    )
    assert not torch.equal(states[0][stem], states[1][stem])
    averaged_bn = (
        states[0]["backbone._bn0.running_mean"] + states[1]["backbone._bn0.running_mean"]
    ) / 2
    assert not torch.allclose(soup.state_dict()["backbone._bn0.running_mean"], averaged_bn)
    scores = score_pixels(soup, images, val)
    assert scores.shape == (6,) and np.isfinite(scores).all()

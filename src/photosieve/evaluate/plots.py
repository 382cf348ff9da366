"""The report's figures as PNG bytes (matplotlib, Agg backend, no global state left behind).

`review_recall_curve` computes the trade-off the business chooses on: for each target recall,
the threshold certified on the calibration split and the review rate it causes on the test set.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from photosieve.config import CERTIFY
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.certify import InsufficientPositivesError, RecallCertifier
from photosieve.records import binary_labels

DEFAULT_TARGETS: tuple[float, ...] = (0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.993, 0.995, 0.997, 0.999)


LOGIT_RANGE = 10.0  # histogram spans scores in [expit(-10), expit(10)]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _threshold_lines(ax: object, policy: DecisionPolicy | None) -> None:
    if policy is None:
        return
    ax.axvline(policy.approve_below, color="tab:green", ls="--",  # type: ignore[attr-defined]
               label=f"approve below {policy.approve_below:.3g}")  # fmt: skip
    if policy.remove_at is not None:
        ax.axvline(policy.remove_at, color="tab:red", ls="--",  # type: ignore[attr-defined]
                   label=f"remove at {policy.remove_at:.3g}")  # fmt: skip


def pr_curve_png(scores: np.ndarray, labels: np.ndarray, policy: DecisionPolicy | None) -> bytes:
    """Precision–recall curve of the scores, with the approve threshold's operating point."""
    y = binary_labels(labels)
    precision, recall, _ = precision_recall_curve(y, scores)
    fig = Figure(figsize=(5.2, 4))
    ax = fig.subplots()
    ax.plot(recall, precision, color="tab:blue", label="test split")
    if policy is not None and y.any():
        flagged = scores >= policy.approve_below
        r = float(np.mean(flagged[y]))
        p = float(np.mean(y[flagged])) if flagged.any() else 1.0
        ax.scatter([r], [p], color="tab:green", zorder=3,
                   label=f"approve threshold: recall {r:.3f}, precision {p:.3f}")  # fmt: skip
    ax.set(xlabel="recall (offensive photos not auto-approved)", ylabel="precision",
           title="Precision–recall (at the test mix)", xlim=(0, 1.01), ylim=(0, 1.01))  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def histogram_png(scores: np.ndarray, labels: np.ndarray, policy: DecisionPolicy | None) -> bytes:
    """Score histograms per class (log counts) with the thresholds drawn."""
    y = binary_labels(labels)
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    # Logit x-axis: confident scores pile up near 0 and 1, where thresholds usually sit.
    edges = 1.0 / (1.0 + np.exp(-np.linspace(-LOGIT_RANGE, LOGIT_RANGE, 61)))
    bins = [float(b) for b in edges]
    clipped = np.clip(scores, edges[0], edges[-1])
    ax.hist(clipped[~y], bins=bins, alpha=0.6, color="tab:blue", label=f"ok ({(~y).sum()})")
    ax.hist(clipped[y], bins=bins, alpha=0.6, color="tab:orange", label=f"offensive ({y.sum()})")
    _threshold_lines(ax, policy)
    ax.set_xscale("logit")
    ticks = [1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set(xlabel="score (logit scale; beyond the ends clipped)", ylabel="photos (log scale)",
           title="Scores per class (evaluation set)")  # fmt: skip
    ax.legend(fontsize=8)
    return _png(fig)


def review_recall_curve(
    calibration_scores: np.ndarray,
    calibration_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    *,
    targets: Sequence[float] = DEFAULT_TARGETS,
    confidence: float = CERTIFY.confidence,
    prevalence: float = CERTIFY.prevalence,
) -> pd.DataFrame:
    """Per target recall: certified threshold (calibration) and its test recall / review rate."""
    y_test = binary_labels(test_labels)
    rows = []
    for target in targets:
        try:
            cert = RecallCertifier(target, confidence).fit(calibration_scores, calibration_labels)
        except InsufficientPositivesError as exc:
            rows.append({"target_recall": target, "certifiable": False,
                         "positives_missing": exc.n_missing})  # fmt: skip
            continue
        flagged = test_scores >= cert.threshold_
        pos_rate = float(np.mean(flagged[y_test])) if y_test.any() else float("nan")
        neg_rate = float(np.mean(flagged[~y_test])) if (~y_test).any() else float("nan")
        rows.append({
            "target_recall": target, "certifiable": True, "positives_missing": 0,
            "threshold": cert.threshold_, "certified_lower_bound": cert.recall_lower_bound_,
            "test_recall": pos_rate,
            "review_rate_at_prevalence": prevalence * pos_rate + (1 - prevalence) * neg_rate,
        })  # fmt: skip
    return pd.DataFrame(rows)


def review_recall_png(curve: pd.DataFrame, prevalence: float, chosen: float | None) -> bytes:
    """Review rate at production prevalence against the certified target recall."""
    fig = Figure(figsize=(5.2, 4))
    ax = fig.subplots()
    ok = curve[curve["certifiable"]] if "certifiable" in curve else curve.iloc[:0]
    if len(ok):
        ax.plot(ok["target_recall"], 100 * ok["review_rate_at_prevalence"], marker="o")
        if chosen is not None and (ok["target_recall"] == chosen).any():
            row = ok[ok["target_recall"] == chosen].iloc[0]
            ax.scatter(
                [chosen],
                [100 * row["review_rate_at_prevalence"]],
                s=90,
                facecolors="none",
                edgecolors="tab:red",
                label="this bundle's target",
            )
            ax.legend(fontsize=8)  # fmt: skip
    else:
        ax.text(0.5, 0.5, "no target certifiable\n(too few calibration positives)",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
    ax.set(xlabel="certified recall target (95% confidence)",
           ylabel=f"% of uploads sent to review (π = {prevalence:g})",
           title="Review workload vs. guaranteed recall")  # fmt: skip
    ax.grid(alpha=0.3)
    return _png(fig)

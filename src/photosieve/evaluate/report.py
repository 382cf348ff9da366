"""The deployment report: evaluate a bundle on a labelled manifest and write one HTML file.

The page is self-contained (PNGs embedded as base64, inline CSS) so it can be mailed or
archived next to the bundle. It answers "should we deploy this bundle?": the certified policy
and its evidence, a checklist, test-set results per band and per group, the plots, and the
training diagnosis (`photosieve.evaluate.diagnose`, when available).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.bundle import ModelBundle
from photosieve.data.manifest import read_manifest
from photosieve.evaluate import plots
from photosieve.evaluate._template import render
from photosieve.evaluate.diagnose import diagnose_arrays
from photosieve.evaluate.metrics import Evaluation, evaluate_policy
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.certify import cp_interval, positives_for_misses
from photosieve.records import binary_labels
from photosieve.scoring import calibration_rows, score_rows, select_rows

GROUP_CANDIDATES = ("source", "origin")
# Avatars this small (longest side, px) are reported as their own group: a model that only saw
# photos may fail on icons, and a person would never know from the overall figures.
TINY_AVATAR_SIDE = 128


def _rows(manifest: str | Path, split: str) -> pd.DataFrame:
    frame = read_manifest(manifest, columns=("path", "label"))
    if split != "all" and "split" not in frame.columns:
        split = "all"  # an unsplit manifest (e.g. photos from a new source): use every row
    return select_rows(frame, None if split == "all" else split, primary_only=False)


def _groups(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    groups = {c: rows[c].astype(str).to_numpy() for c in GROUP_CANDIDATES if c in rows.columns}
    if {"width", "height"} <= set(rows.columns):
        side = np.maximum(rows["width"].to_numpy(), rows["height"].to_numpy())
        groups["size"] = np.where(side <= TINY_AVATAR_SIDE, f"tiny (≤ {TINY_AVATAR_SIDE} px)",
                                  f"larger (> {TINY_AVATAR_SIDE} px)")  # fmt: skip
    return groups


def _require_policy(model: ModelBundle) -> DecisionPolicy:
    if model.policy is None:
        raise ValueError("the bundle has no decision policy; run `photosieve calibrate` first")
    return model.policy


def evaluate_bundle(
    bundle: str | Path,
    manifest: str | Path,
    *,
    split: str = "test",
    prevalence: float | None = None,
    workdir: Path | None = None,
) -> Evaluation:
    """Score `split` of `manifest` (or every row with split='all') and evaluate the policy.

    `prevalence` defaults to the one the bundle's policy was certified at.
    """
    return _evaluated(ModelBundle.load(bundle), manifest, split, prevalence, workdir)[0]


def _evaluated(
    model: ModelBundle, manifest: str | Path, split: str, prevalence: float | None,
    workdir: Path | None,
) -> tuple[Evaluation, np.ndarray, np.ndarray]:  # fmt: skip
    """The evaluation of `split`, with the scores and labels it was computed from."""
    policy = _require_policy(model)
    rows = _rows(manifest, split)
    scores = score_rows(model, rows, workdir=workdir)
    labels = rows["label"].to_numpy()
    ev = evaluate_policy(
        scores, labels, policy, prevalence=policy.prevalence if prevalence is None else prevalence,
        confidence=policy.confidence, groups=_groups(rows),
    )  # fmt: skip
    return ev, scores, labels


def diagnosis_table(
    scores: np.ndarray, labels: np.ndarray, splits: np.ndarray, *, operating_threshold: float
) -> pd.DataFrame:
    """The bias / variance / mismatch table (`photosieve.evaluate.diagnose`)."""
    result = diagnose_arrays(scores, labels, splits, operating_threshold=operating_threshold)
    table = pd.DataFrame(result.rows())
    table["largest"] = np.where(table["largest"].astype(bool), "◀ largest: " + result.remedies, "")
    return table.set_index("name")


def checklist(policy: DecisionPolicy, ev: Evaluation) -> list[tuple[bool, str]]:
    """(passed, sentence) pairs a person reads before deploying."""
    o, rec = ev.overall, policy.evidence.get("recall", {})
    bound = rec.get("recall_lower_bound", float("nan"))
    items = [
        (bound >= policy.target_recall,
         f"Approve threshold certified on {rec.get('n_positives', '?')} calibration positives "
         f"({rec.get('n_misses', '?')} missed): recall ≥ {bound:.4f} with "
         f"{policy.confidence:.0%} confidence (target {policy.target_recall:g})."),
        (not o["recall_ci"][1] < policy.target_recall,
         f"Test recall {o['recall']:.4f} (95% CI {o['recall_ci'][0]:.4f}–{o['recall_ci'][1]:.4f}"
         f"; fails only if the whole interval is below {policy.target_recall:g}); "
         f"{o['missed_offensive']} of {o['n_offensive']} offensive photos auto-approved."),
    ]  # fmt: skip
    for name, frame in ev.by_group.items():
        # A group fails when its recall is significantly below target (CP upper bound below).
        upper = [_recall_upper(r.n_offensive, r.missed_offensive, ev.confidence)
                 for r in frame.itertuples()]  # fmt: skip
        below = frame[np.asarray(upper) < policy.target_recall]
        missed = frame[(frame["n_offensive"] > 0) & (frame["missed_offensive"] > 0)]
        text = f"By {name}: " + (
            "no group misses offensive photos." if missed.empty else
            "missed offensive photos in " + ", ".join(
                f"{idx} ({int(r.missed_offensive)}/{int(r.n_offensive)})"
                for idx, r in missed.head(8).iterrows()) + "; "
            + (f"recall significantly below target in {', '.join(map(str, below.index[:8]))}."
               if len(below) else "no group is significantly below the target.")
        )  # fmt: skip
        items.append((below.empty, text))
    items.append((True, f"Review workload at {ev.prevalence:.0%} prevalence: "
                  f"{o['review_rate_at_prevalence']:.2%} of uploads (measured on this set: "
                  f"{o['review_rate']:.2%}); {o['automatic_share_at_prevalence']:.2%} handled "
                  "automatically." + _more_positives_hint(policy)))  # fmt: skip
    prec = policy.evidence.get("precision")
    if policy.remove_at is not None and prec:
        items.append(
            (
                True,
                f"Auto-remove band from {policy.remove_at:g}: precision ≥ "
                f"{prec['precision_lower_bound']:.4f} certified at prevalence "
                f"{prec['prevalence']}; {o['wrongly_removed_ok']} ok test photos removed.",
            )
        )
    else:
        reason = (prec or {}).get("reason_not_certified") or "disabled at calibration"
        items.append((True, f"No auto-remove band ({reason}): every non-approved photo goes "
                      "to a person."))  # fmt: skip
    return items


def _more_positives_hint(policy: DecisionPolicy) -> str:
    """What more calibration positives would buy: each extra allowed miss lowers the workload."""
    rec = policy.evidence.get("recall", {})
    n, allowed = rec.get("n_positives"), rec.get("max_misses_allowed")
    if n is None or allowed is None:
        return ""
    more = [positives_for_misses(m, policy.target_recall, policy.confidence)
            for m in (allowed + 1, allowed + 2)]  # fmt: skip
    return (f" With {n} calibration positives at most {allowed} may be missed, so the "
            f"{_ordinal(allowed + 1)}lowest-scoring one sets the threshold; {more[0]} "
            f"positives would allow {allowed + 1} miss{'es' if allowed else ''}, {more[1]} "
            f"would allow {allowed + 2}.")  # fmt: skip


def _ordinal(k: int) -> str:
    if k == 1:
        return ""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix} "


def _recall_upper(n_pos: Any, missed: Any, confidence: float) -> float:
    return cp_interval(int(n_pos) - int(missed), int(n_pos), confidence)[1] if n_pos else 1.0


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, *, index: bool = True) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4f}"
        return html.escape(str(v))

    return frame.to_html(index=index, formatters=None, float_format=lambda v: fmt(v),
                         classes="data", border=0, escape=True)  # fmt: skip


def render_report(
    model: ModelBundle,
    ev: Evaluation,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    *,
    curve: pd.DataFrame | None = None,
    diagnosis: pd.DataFrame | None = None,
    title: str = "photosieve deployment report",
    data_note: str = "",
) -> str:
    """The HTML page for an evaluated bundle (pure: no file or model access)."""
    policy = _require_policy(model)
    y = binary_labels(test_labels)
    checks = checklist(policy, ev)
    figures = [
        _img(plots.histogram_png(test_scores, y, policy), "score histograms per class"),
        _img(plots.pr_curve_png(test_scores, y, policy), "precision-recall curve"),
    ]
    if curve is not None and len(curve):
        figures.append(_img(plots.review_recall_png(curve, ev.prevalence, policy.target_recall),
                            "review rate vs certified recall"))  # fmt: skip
    overall = {k: v for k, v in ev.overall.items() if not isinstance(v, dict)}
    summary = pd.DataFrame({"value": [", ".join(f"{x:.4f}" for x in v) if isinstance(v, list) else v
                                      for v in overall.values()]}, index=list(overall))  # fmt: skip
    order = ["missed_offensive", "n_offensive", "review_rate"]
    groups = {name: _table(frame.sort_values(order, ascending=False))
              for name, frame in ev.by_group.items()}  # fmt: skip
    return render(
        title=title,
        verdict=all(ok for ok, _ in checks),
        workload=ev.overall["review_rate_at_prevalence"],
        checks=checks,
        bundle={"version": model.version, "backbone": model.backbone_id,
                "created": model.created_at, "data fingerprint": model.data_fingerprint,
                **_tuning_rows(model), **_cascade_rows(model)},
        policy=policy,
        evidence_source=policy.evidence.get("calibration_source", ""),
        data_note=data_note,
        figures=figures,
        confusion=_table(ev.confusion),
        summary=_table(summary),
        groups=groups,
        curve=_table(curve, index=False) if curve is not None and len(curve) else "",
        diagnosis=_table(diagnosis) if diagnosis is not None else "",
    )  # fmt: skip


def _tuning_rows(model: ModelBundle) -> dict[str, str]:
    """How a fine-tuned backbone was made, for the report's model table (nothing if frozen)."""
    epochs = model.train_config.get("finetune_epochs") or 0
    if not epochs:
        return {}
    head = {
        "refit": "fitted on the tuned embeddings",
        "tuned": "the classifier tuned with it",
        "both": "the mean of one fitted on the tuned embeddings and the classifier tuned with it",
    }.get(model.train_config.get("finetune_head", "refit"), "?")
    runs = model.train_config.get("finetune_seeds") or 1
    soup = f"; the mean weights of {runs} runs from one start (a model soup)" if runs > 1 else ""
    return {
        "backbone fine-tuning": f"every layer, {epochs} epoch{'s' * (epochs != 1)} on the "
        f"training photos{soup}; head: {head}"
    }


def _cascade_rows(model: ModelBundle) -> dict[str, str]:
    """A cascade's second stage, for the report's model table (nothing for one stage)."""
    refiner = model.refiner
    if refiner is None:
        return {}
    rule = refiner.gate_rule
    passed = rule.get("validation_negatives_passed")
    return {
        "cascade: second backbone": refiner.backbone_id,
        "cascade: gate (first-stage score)": (
            f"{refiner.gate:.4g}: approved below it without the second look; chosen on "
            f"validation ({rule.get('validation_positives_stopped')} of "
            f"{rule.get('validation_positives')} positives stopped"
            + (f", {passed:.1%} of negatives passed on)" if passed is not None else ")")
        ),
    }


def write_report(
    bundle: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    prevalence: float | None = None,
    workdir: Path | None = None,
) -> Path:
    """Evaluate `bundle` on `manifest` and write the HTML report to `out` (prevalence: as in
    `evaluate_bundle`)."""
    model = ModelBundle.load(bundle)
    policy = _require_policy(model)
    ev, scores, labels = _evaluated(model, manifest, split, prevalence, workdir)
    curve, diagnosis = None, None
    frame = read_manifest(manifest, columns=("path", "label"))
    if "split" in frame.columns and (frame["split"] == "calibration").any():
        cal = calibration_rows(frame)
        curve = plots.review_recall_curve(
            score_rows(model, cal, workdir=workdir), cal["label"].to_numpy(), scores, labels,
            confidence=policy.confidence, prevalence=ev.prevalence,
        )  # fmt: skip
    if "split" in frame.columns and (frame["split"] == "train").any():
        everything = frame.reset_index(drop=True)
        diagnosis = diagnosis_table(
            score_rows(model, everything, workdir=workdir),
            (everything["label"] == "offensive").to_numpy().astype(int),
            everything["split"].astype(str).to_numpy(),
            operating_threshold=policy.approve_below,
        )
    note = f"{Path(manifest).resolve()} — {'all rows' if split == 'all' else f'split {split}'}"
    page = render_report(model, ev, scores, labels, curve=curve,
                         diagnosis=diagnosis, data_note=note)  # fmt: skip
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target

"""What the admin page shows beyond today's counts: the drift alarm, the team forecast and the
webhook delivery log, as rows ready for the template."""

from __future__ import annotations

from typing import Any

from photosieve.policy.drift import DriftReport
from photosieve.store.models import WebhookDelivery

DELIVERY_LOG = 20  # latest webhook events on the page


def drift_rows(report: DriftReport, safe_approve_below: float | None) -> list[tuple[str, str]]:
    """The drift verdict's numbers (empty when the bundle has no reference)."""
    if not report.available:
        return []
    rows = [("Uploads compared (latest, live model)", f"{report.uploads:,}")]
    if report.psi is not None:
        rows.append(("Score shift, PSI (limit)", f"{report.psi:.3f} ({report.psi_limit:g})"))
    for band, expected in report.bands_expected.items():
        live = report.bands_live.get(band)
        shown = "—" if live is None else f"{100 * live:.1f}%"
        rows.append((f"{band.capitalize()} share: live vs calibration",
                     f"{shown} vs {100 * expected:.1f}%"))  # fmt: skip
    if report.band_p_value is not None:
        rows.append(("Band shares, χ² p-value", f"{report.band_p_value:.3g}"))
    if report.recall_upper_bound is not None:
        target = 100 * (report.target_recall or 0.0)
        upper = 100 * report.recall_upper_bound
        rows.append(("Recall upper bound from audits (target)", f"{upper:.1f}% ({target:g}%)"))
    if safe_approve_below is not None:
        rows.append(("Fail-safe: approving only below", f"{safe_approve_below:.4f}"))
    return rows


def forecast_rows(forecast: dict[str, Any]) -> dict[str, Any]:
    """Assumptions with their origin, reviewers per user count and the certificate curve."""
    workload, origin = forecast["workload"], forecast["origin"]
    assumptions = [(name.replace("_", " "), f"{value:g}", origin[name])
                   for name, value in vars(workload).items()]  # fmt: skip
    team = [(f"{r['users']:,.0f}", f"{r['uploads_per_day']:,.0f}", f"{r['items_per_day']:,.0f}",
             f"{r['reviewers']:,.1f}") for r in forecast["forecast"]]  # fmt: skip
    curve = [(f"{c['positives']:,}", str(c["misses_allowed"]),
              "—" if c["review_rate"] is None else f"{100 * c['review_rate']:.1f}%")
             for c in forecast["curve"]]  # fmt: skip
    return {"assumptions": assumptions, "team": team, "curve": curve}


def delivery_rows(rows: list[tuple[WebhookDelivery, str]]) -> list[dict[str, str]]:
    """The webhook delivery log, newest first."""
    shown = []
    for row, client in rows:
        answer = str(row.last_status_code) if row.last_status_code is not None else "—"
        shown.append({
            "event_id": row.event_id, "client": client, "upload_id": row.upload_id,
            "status": row.status, "attempts": str(row.attempts), "answer": answer,
            "error": row.last_error or "",
            "next": row.next_attempt_at.strftime("%d %b %H:%M:%S")
            if row.status == "pending" else "",
            "created": row.created_at.strftime("%d %b %H:%M:%S"),
        })  # fmt: skip
    return shown

"""The team forecast of the admin page: `feedback.capacity` fed from the service's own data.

Measured rates (the queue history, `store.throughput`) replace the named assumptions once there
are enough of them (`feedback.capacity.MIN_MEASURED`); until then the review and remove shares
come from the live bundle's calibration reference (its bands at the policy's prevalence), and
the certificate curve from the reference's per-class score quantiles.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from photosieve.feedback.capacity import (
    CURVE_POSITIVES,
    USER_COUNTS,
    Workload,
    certified_review_curve,
    measured_rates,
    reviewers_needed,
)
from photosieve.service.config import Settings
from photosieve.store.throughput import review_throughput


def team_forecast(session: Session, settings: Settings, bundle: Any) -> dict[str, Any]:
    """Assumptions (with where each came from), reviewers per user count, certificate curve."""
    policy = getattr(bundle, "policy", None)
    reference = (policy.evidence.get("reference") if policy is not None else None) or {}
    values: dict[str, float] = {"audit_rate": settings.audit_rate}
    origin = {"audit_rate": "setting PHOTOSIEVE_AUDIT_RATE"}
    if reference:
        values["review_share"] = reference["bands"]["review"]
        values["remove_share"] = reference["bands"]["remove"]
        values["prevalence"] = reference["prevalence"]
        for key in ("review_share", "remove_share", "prevalence"):
            origin[key] = "bundle calibration reference"
    for key, value in measured_rates(review_throughput(session)).items():
        values[key], origin[key] = value, "measured (queue history)"
    workload = Workload(**values)
    for field in dataclasses.fields(Workload):
        origin.setdefault(field.name, "assumed (default)")
    curve: list[dict[str, Any]] = []
    if policy is not None and reference.get("positive_quantiles"):
        curve = certified_review_curve(
            np.asarray(reference["positive_quantiles"]),
            np.asarray(reference["negative_quantiles"]),
            CURVE_POSITIVES,
            target_recall=policy.target_recall,
            confidence=policy.confidence,
            prevalence=workload.prevalence,
        )
    return {
        "workload": workload,
        "origin": origin,
        "forecast": reviewers_needed(workload, USER_COUNTS),
        "curve": curve,
    }


class ForecastCache:
    """`team_forecast` reused for `max_age` seconds: the queue history is read once for the
    admin page and its chart, not at every load."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[str, float, dict[str, Any]] | None = None

    def get(self, session: Session, settings: Settings, bundle: Any) -> dict[str, Any]:
        version = str(getattr(bundle, "version", "") or "")
        with self._lock:
            cached = self._cached
            if cached and cached[0] == version and time.monotonic() - cached[1] < self.max_age:
                return cached[2]
            forecast = team_forecast(session, settings, bundle)
            self._cached = (version, time.monotonic(), forecast)
            return forecast

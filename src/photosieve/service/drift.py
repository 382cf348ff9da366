"""The drift alarm of the live model, and the fail-safe threshold it switches on.

`DriftMonitor.report()` compares the latest `drift_window` uploads of the live model (and its
production evidence) with the calibration reference in its bundle (`policy.drift.assess`); the
verdict is reused for `drift_check_seconds` so uploads do not pay for it: when it is older, the
one request that finds it so recomputes it while concurrent requests go on with the previous
verdict (they never queue behind the computation). While the alarm is
raised ("re-certification needed", on the admin page, `/v1/admin/stats` and `/metrics`) and
`drift_fail_safe` is on, `safe_approve_below()` gives a lower approve threshold — the configured
`drift_safe_approve_below`, else the lowest calibration positive's score — so uploads between it
and the certified threshold go to people (recorded as the review band: a census, labelled, so the
production evidence stays valid). An alarm raised by the audits lasts until a re-certified bundle
(a new version) is served — the evidence is per version and only grows; one raised by the scores
(PSI, band shares) is judged again on the latest window at every check and clears with it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from photosieve.policy.drift import DriftReport, assess, recall_upper_bound
from photosieve.service.config import Settings
from photosieve.store import evidence


class DriftMonitor:
    """The cached drift verdict of whichever bundle `scorer_of()` returns now."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._lock = threading.Lock()  # guards `_cached`
        self._computing = threading.Lock()  # held by the one request recomputing the verdict
        self._cached: tuple[str, float, DriftReport] | None = None  # (version, when, report)

    def report(self, bundle: Any, *, fresh: bool = False) -> DriftReport:
        """The verdict for `bundle` (recomputed when older than `drift_check_seconds`)."""
        policy = getattr(bundle, "policy", None)
        version = str(getattr(bundle, "version", "") or "")
        if policy is None or not version:
            return DriftReport(False, note="the live model has no certified policy")
        cached = self._cached_for(version)
        if not fresh and cached is not None:
            verdict, current = cached
            if current:
                return verdict
            if not self._computing.acquire(blocking=False):
                return verdict  # another request is recomputing it: go on with this one
        else:
            self._computing.acquire()  # asked fresh, or none for this model yet: wait for it
        try:
            waited = None if fresh else self._cached_for(version)
            if waited is not None and waited[1]:
                return waited[0]  # computed by another request while this one waited
            verdict = self._compute(policy, version)
            with self._lock:
                self._cached = (version, time.monotonic(), verdict)
            return verdict
        finally:
            self._computing.release()

    def _cached_for(self, version: str) -> tuple[DriftReport, bool] | None:
        """The cached verdict of `version` and whether it is younger than `drift_check_seconds`."""
        with self._lock:
            cached = self._cached
        if cached is None or cached[0] != version:
            return None
        return cached[2], time.monotonic() - cached[1] < self.settings.drift_check_seconds

    def _compute(self, policy: Any, version: str) -> DriftReport:
        s = self.settings
        if not policy.evidence.get("reference"):
            return assess(None, np.zeros(0), recall_upper=None, target_recall=policy.target_recall,
                          min_uploads=s.drift_min_uploads, psi_limit=s.drift_psi_limit,
                          band_p_value=s.drift_band_p_value)  # fmt: skip
        with self.sessions() as session:
            scores = evidence.recent_scores(session, version, s.drift_window)
            counts = evidence.evidence_counts(
                session, version, policy.approve_below, legacy_audit_rate=s.audit_rate
            )
        upper = recall_upper_bound(
            counts.caught, counts.census_misses, counts.strata, policy.confidence
        )
        return assess(
            policy.evidence.get("reference"), scores,
            recall_upper=upper, target_recall=policy.target_recall,
            min_uploads=s.drift_min_uploads, psi_limit=s.drift_psi_limit,
            band_p_value=s.drift_band_p_value,
        )  # fmt: skip

    def safe_approve_below(self, bundle: Any) -> float | None:
        """The fail-safe approve threshold while the alarm is raised (None: none applies)."""
        if not self.settings.drift_fail_safe:
            return None
        verdict = self.report(bundle)
        if not verdict.raised:
            return None
        policy = bundle.policy
        reference = policy.evidence.get("reference") or {}
        safe = self.settings.drift_safe_approve_below
        if safe is None:
            safe = reference.get("min_positive_score", 0.0)
        return min(float(safe), float(policy.approve_below))

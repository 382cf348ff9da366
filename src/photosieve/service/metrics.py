"""Prometheus metrics of the service in the text exposition format (hand-rolled, no dependency).

Counters, the latency histogram and the micro-batcher's counters (model calls, images and
uploads scored, uploads waiting) live in the process; queue depth, the drift alarm
(`photosieve_recertification_needed`) and webhook events by status are read from the database at
scrape time, so they are right whichever process did the work.
"""

from __future__ import annotations

import threading
from collections import Counter

from photosieve.policy.drift import DriftReport
from photosieve.service.batching import BatchStats

LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Thread-safe counters of one service process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.uploads: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.decisions: Counter[str] = Counter()
        self._bucket_counts = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0

    def upload_done(self, decision: str, seconds: float) -> None:
        with self._lock:
            self.uploads[decision] += 1
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self._bucket_counts[i] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def upload_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def decision_made(self, label: str) -> None:
        with self._lock:
            self.decisions[label] += 1

    def render(
        self,
        queue_depth: dict[str, int],
        bank_size: int,
        scoring: BatchStats | None = None,
        scoring_waiting: int = 0,
        *,
        drift: DriftReport | None = None,
        webhooks: dict[str, int] | None = None,
    ) -> str:
        """The exposition text for `/metrics` (`scoring`: the micro-batcher's counters)."""
        with self._lock:
            lines = [
                "# HELP photosieve_uploads_total Uploads moderated, by decision.",
                "# TYPE photosieve_uploads_total counter",
            ]
            for decision in ("approved", "pending_review", "removed"):
                value = self.uploads[decision]
                lines.append(f'photosieve_uploads_total{{decision="{decision}"}} {value}')
            lines += [
                "# HELP photosieve_uploads_rejected_total Uploads refused as bad input.",
                "# TYPE photosieve_uploads_rejected_total counter",
            ]
            for reason, value in sorted(self.rejected.items()):
                lines.append(f'photosieve_uploads_rejected_total{{reason="{reason}"}} {value}')
            lines += [
                "# HELP photosieve_review_decisions_total Reviewer decisions, by label.",
                "# TYPE photosieve_review_decisions_total counter",
            ]
            for label in ("offensive", "ok"):
                value = self.decisions[label]
                lines.append(f'photosieve_review_decisions_total{{label="{label}"}} {value}')
            lines += [
                "# HELP photosieve_upload_latency_seconds Time to moderate an upload.",
                "# TYPE photosieve_upload_latency_seconds histogram",
            ]
            for bound, count in zip(LATENCY_BUCKETS, self._bucket_counts, strict=True):
                lines.append(f'photosieve_upload_latency_seconds_bucket{{le="{bound}"}} {count}')
            lines.append(
                f'photosieve_upload_latency_seconds_bucket{{le="+Inf"}} {self._latency_count}'
            )
            lines.append(f"photosieve_upload_latency_seconds_sum {self._latency_sum:.6f}")
            lines.append(f"photosieve_upload_latency_seconds_count {self._latency_count}")
        lines += [
            "# HELP photosieve_queue_depth Open review items (pending or claimed), by kind.",
            "# TYPE photosieve_queue_depth gauge",
        ]
        for kind, value in sorted(queue_depth.items()):
            lines.append(f'photosieve_queue_depth{{kind="{kind}"}} {value}')
        lines += [
            "# HELP photosieve_known_bad_hashes Active entries in the known-bad hash bank.",
            "# TYPE photosieve_known_bad_hashes gauge",
            f"photosieve_known_bad_hashes {bank_size}",
        ]
        if drift is not None:
            lines += [
                "# HELP photosieve_recertification_needed 1 while the drift alarm is raised.",
                "# TYPE photosieve_recertification_needed gauge",
                f"photosieve_recertification_needed {int(drift.raised)}",
            ]
            if drift.psi is not None:
                lines += [
                    "# HELP photosieve_drift_psi Score PSI of the latest uploads vs calibration.",
                    "# TYPE photosieve_drift_psi gauge",
                    f"photosieve_drift_psi {drift.psi:.6f}",
                ]
        if webhooks is not None:
            lines += [
                "# HELP photosieve_webhook_deliveries Webhook events, by delivery status.",
                "# TYPE photosieve_webhook_deliveries gauge",
            ]
            for status, value in sorted(webhooks.items()):
                lines.append(f'photosieve_webhook_deliveries{{status="{status}"}} {value}')
        if scoring is not None:
            lines += [
                "# HELP photosieve_scoring_batches_total Model calls of the scoring thread.",
                "# TYPE photosieve_scoring_batches_total counter",
                f"photosieve_scoring_batches_total {scoring.batches}",
                "# HELP photosieve_scoring_images_total Images scored in those calls.",
                "# TYPE photosieve_scoring_images_total counter",
                f"photosieve_scoring_images_total {scoring.images}",
                "# HELP photosieve_scoring_requests_total Uploads scored in those calls.",
                "# TYPE photosieve_scoring_requests_total counter",
                f"photosieve_scoring_requests_total {scoring.requests}",
                "# HELP photosieve_scoring_waiting Uploads waiting for the next model call.",
                "# TYPE photosieve_scoring_waiting gauge",
                f"photosieve_scoring_waiting {scoring_waiting}",
            ]
        return "\n".join(lines) + "\n"

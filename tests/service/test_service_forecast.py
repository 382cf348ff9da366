"""The team forecast on the admin page: a server-rendered SVG chart and its tables."""

from __future__ import annotations

import numpy as np

from photosieve.feedback.capacity import MIN_MEASURED, measured_rates
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.drift import reference_distribution
from photosieve.store.throughput import ReviewThroughput
from service_harness import Service


def test_admin_sees_the_forecast_chart_and_tables(service: Service) -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.beta(6, 2, 400), rng.beta(1, 9, 3000)]
    labels = np.r_[np.ones(400), np.zeros(3000)]
    reference = reference_distribution(scores, labels, prevalence=0.01, approve_below=0.3,
                                       remove_at=None)  # fmt: skip
    service.set_policy(DecisionPolicy(approve_below=0.3, evidence={"reference": reference}))
    admin = service.reviewer("ada", role="admin")
    chart = admin.get("/admin/capacity.svg")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in chart.content and b"<script" not in chart.content
    assert b"reviewers needed" in chart.content and b"certified review rate" in chart.content
    page = admin.get("/admin").text
    assert 'src="/admin/capacity.svg"' in page
    assert "100,000,000" in page and "team-forecast" in page and "certificate-curve" in page
    assert "bundle calibration reference" in page  # each assumption says where it came from
    assert service.reviewer("rita").get("/admin/capacity.svg").status_code == 403
    anonymous = service.client().get("/admin/capacity.svg", follow_redirects=False)
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]


def test_measured_rates_replace_assumptions_only_with_enough_history() -> None:
    few = ReviewThroughput(uploads=50, model_decisions={"approve": 40, "review": 10},
                           decisions=20, active_hours=0.1, appeals=0, audits=1)  # fmt: skip
    assert measured_rates(few) == {}
    many = ReviewThroughput(
        uploads=1000, model_decisions={"approve": 800, "review": 150, "remove": 50},
        decisions=MIN_MEASURED, active_hours=2.0, appeals=5, audits=8,
    )  # fmt: skip
    rates = measured_rates(many)
    assert rates["review_share"] == 0.15 and rates["remove_share"] == 0.05
    assert rates["decisions_per_hour"] == MIN_MEASURED / 2.0 and rates["audit_rate"] == 0.01
    assert "appeal_rate" not in rates  # 50 removals: too few to measure

"""The drift alarm on real uploads (drawn photos scored by the real ONNX bundle), SQLite and
PostgreSQL: a stream like the calibration sample raises nothing; a stream of offensive-looking
photos raises "re-certification needed" on `/v1/admin/stats`, `/metrics` and the admin page,
and the fail-safe threshold sends approvals above it to people while the latest window shows the
shift (or until a new model is served).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.drift import reference_distribution
from photosieve.service.drift import DriftMonitor
from photosieve.vision.preprocess import load_image
from service_harness import REVIEW_ALL, Service, build_service, drawn_photo, make_scorer

APPROVE_BELOW = 0.97  # loose on purpose: some offensive-looking photos score below it
WINDOW = 30


def _calibrated_policy(svc: Service) -> DecisionPolicy:
    """A policy whose reference comes from 30 + 30 drawn calibration photos at 10% prevalence."""
    scorer = make_scorer(svc.bundle, svc.embedder, REVIEW_ALL)
    photos = [("circle", 0), ("rectangle", 1)]
    images = [load_image(drawn_photo(3000 + i, shape=shape)) for shape, _ in photos
              for i in range(30)]  # fmt: skip
    scores = np.array([s.score for s in scorer.score_images(images)])
    labels = np.repeat([0, 1], 30)
    reference = reference_distribution(
        scores, labels, prevalence=0.1, approve_below=APPROVE_BELOW, remove_at=None
    )
    return DecisionPolicy(approve_below=APPROVE_BELOW, prevalence=0.1,
                          evidence={"reference": reference})  # fmt: skip


@pytest.fixture
def drifting(tmp_path: Path, db_url: str, tiny_bundle: Any, embedder: Any) -> Iterator[Service]:
    svc = build_service(
        tmp_path, db_url, tiny_bundle, embedder, drift_window=WINDOW, drift_min_uploads=WINDOW,
        drift_psi_limit=1.0, drift_check_seconds=0,
    )  # fmt: skip
    yield svc
    svc.close()


def _upload(svc: Service, seed: int, shape: str) -> dict[str, Any]:
    response = svc.upload(svc.api(), drawn_photo(seed, shape=shape), user_id=f"u{seed}")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_shifted_stream_raises_the_alarm_and_fails_safe(drifting: Service) -> None:
    policy = _calibrated_policy(drifting)
    drifting.set_policy(policy)
    admin = drifting.reviewer("ada", role="admin")
    for i in range(WINDOW):  # like calibration: one photo in ten offensive-looking
        _upload(drifting, 4000 + i, "rectangle" if i % 10 == 0 else "circle")
    calm = admin.get("/v1/admin/stats").json()
    assert calm["recertification_needed"] is False, calm["drift"]
    assert calm["drift"]["available"] and calm["drift"]["uploads"] == WINDOW
    assert calm["drift"]["psi"] < 1.0 and calm["drift"]["fail_safe_approve_below"] is None
    assert "photosieve_recertification_needed 0" in drifting.client().get("/metrics").text

    shifted = [_upload(drifting, 5000 + i, "rectangle") for i in range(WINDOW)]
    stats = admin.get("/v1/admin/stats").json()
    assert stats["recertification_needed"] is True
    assert any("PSI" in reason for reason in stats["drift"]["reasons"])
    assert stats["drift"]["psi"] > 1.0
    assert stats["drift"]["bands_live"]["review"] > stats["drift"]["bands_expected"]["review"]
    safe = stats["drift"]["fail_safe_approve_below"]
    reference = policy.evidence["reference"]
    assert safe == pytest.approx(reference["min_positive_score"]) and safe < APPROVE_BELOW
    metrics = drifting.client().get("/metrics").text
    assert "photosieve_recertification_needed 1" in metrics and "photosieve_drift_psi" in metrics
    page = admin.get("/admin").text
    assert "Re-certification needed" in page and "recertification-needed" in page

    # The fail-safe: once raised, a photo the certified policy approves (safe ≤ score < 0.97)
    # goes to people, recorded as the review band (a census: labelled, valid evidence).
    late = [u for u in shifted[WINDOW // 2 :] if safe <= u["score"] < APPROVE_BELOW]
    assert late, "no late upload in the fail-safe range; the drawn photos changed?"
    assert all(u["decision"] == "pending_review" for u in late)
    fresh = _upload(drifting, 6000, "circle")
    if fresh["score"] < safe:
        assert fresh["decision"] == "approved"  # clearly harmless photos are still approved

    bundle = drifting.app.state.moderator.scorer.bundle
    off = drifting.settings.model_copy(update={"drift_fail_safe": False})
    assert DriftMonitor(off, drifting.sessions).safe_approve_below(bundle) is None

    # A score-raised alarm is judged on the latest window: once the stream looks like the
    # calibration sample again, it clears and the certified threshold applies again.
    for i in range(WINDOW):
        _upload(drifting, 7000 + i, "rectangle" if i % 10 == 0 else "circle")
    cleared = admin.get("/v1/admin/stats").json()
    assert cleared["recertification_needed"] is False, cleared["drift"]
    assert cleared["drift"]["fail_safe_approve_below"] is None

    # A re-certified model (a new version) starts with a clean slate.
    drifting.set_policy(DecisionPolicy(approve_below=0.5, prevalence=0.1,
                                       evidence={"reference": reference}))  # fmt: skip
    renewed = admin.get("/v1/admin/stats").json()
    assert renewed["recertification_needed"] is False
    assert renewed["drift"]["uploads"] == 0


def test_a_bundle_without_reference_reports_drift_unavailable(service: Service) -> None:
    admin = service.reviewer("ada", role="admin")
    stats = admin.get("/v1/admin/stats").json()
    assert stats["recertification_needed"] is False
    assert stats["drift"]["available"] is False and "recalibrate" in stats["drift"]["note"]
    assert "not available" in admin.get("/admin").text


def test_a_stale_verdict_is_recomputed_by_one_request_while_the_others_go_on(
    service: Service,
) -> None:
    """Only the request that finds the verdict stale pays for the new one; concurrent requests
    get the previous verdict at once instead of queueing behind the computation."""
    import dataclasses
    import threading

    from photosieve.policy.drift import DriftReport

    monitor = DriftMonitor(service.settings.model_copy(update={"drift_check_seconds": 0}),
                           service.sessions)  # fmt: skip
    policy = DecisionPolicy(approve_below=0.5, prevalence=0.1)
    bundle = dataclasses.replace(service.bundle.with_policy(policy), version="v1")
    entered, release = threading.Event(), threading.Event()
    verdicts = iter([DriftReport(False, note="first"), DriftReport(True, note="second")])
    calls: list[str] = []

    def compute(policy: Any, version: str) -> DriftReport:
        calls.append(version)
        if len(calls) == 2:  # the recomputation takes a while
            entered.set()
            assert release.wait(20)
        return next(verdicts)

    monitor._compute = compute  # type: ignore[method-assign]
    assert monitor.report(bundle).note == "first"
    slow = threading.Thread(target=monitor.report, args=(bundle,))
    slow.start()  # finds the verdict stale (check every 0 s) and recomputes it
    assert entered.wait(20)
    assert monitor.report(bundle).note == "first"  # not blocked: the previous verdict
    release.set()
    slow.join(20)
    assert not slow.is_alive() and len(calls) == 2
    assert monitor._cached is not None and monitor._cached[2].note == "second"  # kept


def test_the_first_verdict_is_computed_before_the_service_takes_uploads(
    drifting: Service,
) -> None:
    from fastapi.testclient import TestClient

    drifting.set_policy(_calibrated_policy(drifting))
    monitor = drifting.app.state.moderator.drift
    assert monitor._cached is None
    with TestClient(drifting.app):  # the lifespan warms the service up
        assert monitor._cached is not None  # no upload has been made


def test_requests_that_wait_for_the_first_verdict_do_not_compute_it_again(
    service: Service,
) -> None:
    """With no verdict yet (a start, a model switch) concurrent requests wait for the one being
    computed and reuse it: one database read, not one a request."""
    import dataclasses
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from photosieve.policy.drift import DriftReport

    monitor = DriftMonitor(service.settings.model_copy(update={"drift_check_seconds": 60}),
                           service.sessions)  # fmt: skip
    policy = DecisionPolicy(approve_below=0.5, prevalence=0.1)
    bundle = dataclasses.replace(service.bundle.with_policy(policy), version="v1")
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def compute(policy: Any, version: str) -> DriftReport:
        calls.append(version)
        entered.set()
        assert release.wait(20)
        return DriftReport(False, note=f"verdict {len(calls)}")

    monitor._compute = compute  # type: ignore[method-assign]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(monitor.report, bundle)
        assert entered.wait(20)
        waiting = [pool.submit(monitor.report, bundle) for _ in range(3)]
        time.sleep(0.2)  # they are queued on the computation
        assert not any(f.done() for f in waiting)
        release.set()
        notes = [f.result(20).note for f in [first, *waiting]]
    assert calls == ["v1"]
    assert notes == ["verdict 1"] * 4

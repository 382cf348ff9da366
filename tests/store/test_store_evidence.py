"""Production evidence read from the database, and the recall it certifies (SQLite, PostgreSQL).

A known mix: a reviewed census, audited and unaudited approvals with their recorded probability,
a pending audit (worst case: offensive), and rows that are never evidence (pending review,
auto-removed, hash-bank matches, another model version).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from photosieve.bundle import ModelBundle
from photosieve.cli import app
from photosieve.learn.head import LogisticHead
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.production import (
    anytime_recall_bound,
    binomial_count_upper,
    recall_bound,
)
from photosieve.service.config import Settings
from photosieve.store import accounts, queue, uploads
from photosieve.store.db import make_engine, make_sessionmaker, migrate
from photosieve.store.evidence import production_evidence, production_recall
from photosieve.store.models import ItemKind, ReviewDecision
from photosieve.vision.preprocess import PreprocessConfig
from upload_rows import new_upload

_ids = itertools.count()


def _upload(session: Session, decision: str, score: float, **extra: object) -> str:
    i = next(_ids)
    status = {"review": "pending_review", "approve": "approved", "remove": "removed"}[decision]
    new = new_upload(
        i, score=score, model_version=str(extra.pop("version", "live")), model_decision=decision,
        status=status, reason=str(extra.pop("reason", "model_band")), phash="0" * 16, **extra,
    )  # fmt: skip
    return uploads.insert(session, new).id


def _decide(session: Session, upload_id: str, kind: ItemKind, label: str, reviewer: int) -> None:
    item = queue.enqueue(session, upload_id, kind)
    session.flush()
    session.add(ReviewDecision(item_id=item.id, upload_id=upload_id, label=label,
                               reviewer_id=reviewer, previous_status="pending_review",
                               previous_reason="model_band"))  # fmt: skip


def test_census_and_audits_certify_the_live_recall(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        rita = accounts.add_user(session, "rita", "x", "reviewer").id
        for i in range(20):  # the review band, all reviewed: 10 offensive
            label = "offensive" if i < 10 else "ok"
            _decide(session, _upload(session, "review", 0.8), ItemKind.MODEL_BAND, label, rita)
        for i in range(100):  # approvals drawn with p = 0.5: 50 audited, 1 offensive
            up = _upload(session, "approve", 0.1, audit_probability=0.5)
            if i < 49:
                _decide(session, up, ItemKind.AUDIT, "offensive" if i == 0 else "ok", rita)
            elif i == 49:
                queue.enqueue(session, up, ItemKind.AUDIT)  # drawn, not decided yet
        queue.enqueue(session, _upload(session, "review", 0.9), ItemKind.MODEL_BAND)  # pending
        _upload(session, "remove", 0.99)
        _upload(session, "approve", 0.1, reason="hash_match")
        _upload(session, "approve", 0.1, version="old", audit_probability=0.5)
        session.commit()

        ev = production_evidence(session, "live", legacy_audit_rate=0.01)
        assert ev.scores.size == 120  # 20 census + 100 approvals, nothing else
        assert int(ev.labelled.sum()) == 70 and int((ev.labelled & ev.offensive).sum()) == 12
        recall = production_recall(session, "live", 0.5, legacy_audit_rate=0.01)
    assert recall is not None
    upper = binomial_count_upper(2, 0.5, 100, 0.05)  # 1 found + 1 pending, of 100 approvals
    assert recall["caught"] == 10 and recall["audited_misses"] == 2
    assert recall["misses_upper_bound"] == upper
    assert recall["recall_lower_bound"] == pytest.approx(10 / (10 + upper))
    assert recall["anytime_recall_lower_bound"] <= recall["recall_lower_bound"]


def test_no_evidence_no_certificate(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        _upload(session, "approve", 0.1, audit_probability=0.01)
        session.commit()
        assert production_recall(session, "live", 0.5, legacy_audit_rate=0.01) is None


def test_certify_production_command(tmp_path: Path) -> None:
    """`photosieve certify-production` prints the live model's certified production recall."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 8)), np.arange(40) % 2
    bundle = ModelBundle(
        LogisticHead().fit(X, y), backbone_id="test", preprocess=PreprocessConfig(224),
        policy=DecisionPolicy(approve_below=0.5),
    ).save(tmp_path / "w" / "bundle")  # fmt: skip
    version = ModelBundle.load(bundle).version
    engine = make_engine(Settings(workdir=tmp_path / "w").resolved_database_url)
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        rita = accounts.add_user(session, "rita", "x", "reviewer").id
        for i in range(30):
            up = _upload(session, "review", 0.8, version=version)
            _decide(session, up, ItemKind.MODEL_BAND, "offensive" if i < 20 else "ok", rita)
        for _ in range(50):
            up = _upload(session, "approve", 0.1, version=version, audit_probability=1.0)
            _decide(session, up, ItemKind.AUDIT, "ok", rita)  # every approval audited: 0 misses
        session.commit()
    engine.dispose()
    args = ["certify-production", "--workdir", str(tmp_path / "w"), "--target-recall", "0.8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recall lower bound (this look)" in result.output
    assert "1.0000" in result.output  # 20 caught, 0 misses: a census of everything
    assert f"production recall of model {version}" in result.output


def _scanned_recall(session: Session, version: str, threshold: float) -> dict[str, object] | None:
    """The former `production_recall`: every evidence row read into Python, then bounded."""
    ev = production_evidence(session, version, legacy_audit_rate=0.02)
    if not np.any(ev.labelled & ev.offensive):
        return None
    fixed = recall_bound(ev, threshold, confidence=0.95)
    anytime = anytime_recall_bound(ev, threshold, confidence=0.95)
    return {
        "model_version": version, "threshold": threshold, "confidence": 0.95,
        "photos": int(ev.scores.size),
        "census_labelled": int(np.count_nonzero(ev.inclusion == 1.0)),
        "audits_labelled": int(np.count_nonzero(ev.labelled & (ev.inclusion < 1.0))),
        "caught": fixed.caught, "audited_misses": fixed.audited_misses,
        "misses_upper_bound": fixed.misses_upper_bound,
        "recall_lower_bound": fixed.recall_lower_bound,
        "anytime_recall_lower_bound": anytime.recall_lower_bound,
    }  # fmt: skip


def test_sql_aggregate_recall_equals_the_row_scan(engine: Engine) -> None:
    """`production_recall` (one GROUP BY) gives exactly what the row-by-row scan gave, on a
    random mix: census decided or pending, audit strata (recorded and legacy probabilities),
    pending and undone audit decisions, re-decided items, removals, hash matches, old models."""
    migrate(engine)
    rng = np.random.default_rng(7)
    with make_sessionmaker(engine)() as session:
        rita = accounts.add_user(session, "rita", "x", "reviewer").id
        for i in range(400):
            score = float(rng.uniform())
            decision = "review" if score >= 0.6 else "approve"
            if rng.uniform() < 0.05:
                decision = "remove"
            up = _upload(
                session, decision, score,
                audit_probability=None if decision != "approve" or i % 7 == 0
                else float(rng.choice([0.1, 0.5])),
                reason="hash_match" if i % 41 == 0 else "model_band",
                version="old" if i % 37 == 0 else "live",
            )  # fmt: skip
            kind = ItemKind.MODEL_BAND if decision == "review" else ItemKind.AUDIT
            if decision == "remove" or (decision == "approve" and rng.uniform() < 0.5):
                continue
            offensive = rng.uniform() < (0.6 if decision == "review" else 0.08)
            label = "offensive" if offensive else "ok"
            what = rng.uniform()
            if what < 0.15:
                queue.enqueue(session, up, kind)  # pending
            elif what < 0.25:  # undone, then decided again the other way
                _decide(session, up, kind, label, rita)
                session.flush()
                decision_row = session.query(ReviewDecision).filter_by(upload_id=up).one()
                decision_row.undone = True
                session.add(ReviewDecision(
                    item_id=decision_row.item_id, upload_id=up,
                    label="ok" if offensive else "offensive", reviewer_id=rita,
                    previous_status="pending_review", previous_reason="model_band",
                ))  # fmt: skip
            else:
                _decide(session, up, kind, label, rita)
        session.commit()
        for threshold in (0.3, 0.6, 0.61):
            fast = production_recall(session, "live", threshold, legacy_audit_rate=0.02)
            assert fast is not None
            assert fast == _scanned_recall(session, "live", threshold)
        assert production_recall(session, "nobody", 0.5, legacy_audit_rate=0.02) is None

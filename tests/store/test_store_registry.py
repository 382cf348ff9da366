"""The model registry repository on SQLite and PostgreSQL: status moves, one live model at a
time (enforced by the database), rollback targets, shadow scores and the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from photosieve.store import registry, uploads
from photosieve.store.db import make_sessionmaker, migrate
from photosieve.store.models import ModelStatus, ModelVersion
from photosieve.store.registry import EventKind, NewModel, RegistryError
from upload_rows import new_upload


def _new(version: str, parent: str | None = None) -> NewModel:
    return NewModel(version=version, bundle_path=f"/models/{version}", parent_version=parent)


def test_status_moves_and_the_audit_log(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        registry.register(session, _new("v1"), actor="startup", status=ModelStatus.LIVE)
        registry.register(session, _new("v2", "v1"), actor="cli:ops")
        registry.register(session, _new("v3", "v1"), actor="cli:ops")
        with pytest.raises(RegistryError, match="registered already"):
            registry.register(session, _new("v2"), actor="cli:ops")
        assert registry.active_versions(session) == ("v1", None)
        registry.start_shadow(session, "v2", actor="ada")
        registry.start_shadow(session, "v3", actor="ada")  # v2 goes back to candidate
        assert registry.require(session, "v2").status == ModelStatus.CANDIDATE.value
        assert registry.active_versions(session) == ("v1", "v3")
        with pytest.raises(RegistryError) as not_twice:
            registry.start_shadow(session, "v1", actor="ada")
        assert not_twice.value.reason == "is_live"

        registry.make_live(
            session, "v3", actor="ada", kind=EventKind.PROMOTED, evidence={"gate": {"passed": True}}
        )
        assert registry.active_versions(session) == ("v3", None)
        assert registry.require(session, "v1").status == ModelStatus.RETIRED.value
        assert registry.evidence_of(registry.require(session, "v3")) == {"gate": {"passed": True}}
        assert registry.previous_live(session) == "v1"
        assert registry.was_live(session, "v1") and not registry.was_live(session, "v2")
        registry.make_live(
            session, "v2", actor="ada", kind=EventKind.PROMOTED, override=True, reason="drill"
        )
        registry.make_live(session, "v1", actor="ada", kind=EventKind.ROLLED_BACK)
        with pytest.raises(RegistryError) as again:
            registry.make_live(session, "v1", actor="ada", kind=EventKind.ROLLED_BACK)
        assert again.value.reason == "already_live"
        session.commit()
        log = [
            (e.kind, e.version, e.previous_version, e.override) for e in registry.events(session)
        ]
    assert log[:3] == [
        ("rolled_back", "v1", "v2", False),
        ("promoted", "v2", "v3", True),
        ("promoted", "v3", "v1", False),
    ]


def test_the_database_refuses_a_second_live_model(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        registry.register(session, _new("v1"), actor="a", status=ModelStatus.LIVE)
        session.commit()
        session.add(
            ModelVersion(
                version="v2",
                bundle_path="/x",
                data_fingerprint="",
                evidence="{}",
                status="live",
                override=False,
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()


def test_shadow_scores_pair_with_the_live_models_scores(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        rows = [uploads.insert(session, new_upload(i)) for i in range(3)]
        version = rows[0].model_version
        registry.record_shadow_score(session, rows[0].id, "cand", 0.25)
        registry.record_shadow_score(session, rows[1].id, "cand", 0.75)
        session.commit()
        assert registry.shadow_scores(session, "cand") == {rows[0].id: 0.25, rows[1].id: 0.75}
        pairs = registry.shadow_pairs(session, "cand", version)
        assert sorted(p[2] for p in pairs) == [0.25, 0.75]
        assert registry.shadow_pairs(session, "cand", "another-live") == []
        uploads.delete_with_dependents(session, rows[0].id)  # shadow rows go with the upload
        session.commit()
        assert set(registry.shadow_scores(session, "cand")) == {rows[1].id}

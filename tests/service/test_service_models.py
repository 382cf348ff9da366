"""The admin model-registry routes (SQLite and PostgreSQL): admin only, shadow scores recorded
without acting, gated promote (override needs a reason), rollback, and the service switching
the model it scores with on the next upload, without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drawing import labelled_folder
from photosieve.bundle import ModelBundle
from photosieve.data.ingest import ingest
from photosieve.data.manifest import write_manifest
from photosieve.policy.bands import DecisionPolicy
from photosieve.records import MANIFEST_COLUMNS, binary_labels
from photosieve.service.models import ModelSwitcher, ShadowModel, version_of
from photosieve.store import registry
from photosieve.store.models import ModelStatus
from photosieve.vision.embed import embed_files
from service_harness import Service, build_service, drawn_photo


@pytest.fixture
def svc(tmp_path: Path, db_url: str, tiny_bundle: ModelBundle, embedder: Any) -> Iterator[Service]:
    service = build_service(tmp_path, db_url, tiny_bundle, embedder, model_check_seconds=0)
    yield service
    service.close()


def _register(
    service: Service,
    bundle: ModelBundle,
    name: str,
    status: ModelStatus,
    manifest: Path | None = None,
) -> str:
    path = bundle.save(Path(service.settings.workdir) / "models" / name)
    with service.sessions() as session:
        new = registry.NewModel(bundle.version, str(path), manifest_path=str(manifest or ""))
        registry.register(session, new, actor="test", status=status)
        session.commit()
    return bundle.version


def _calibration_manifest(service: Service, embedder: Any) -> tuple[Path, Any, Any]:
    """Drawn labelled photos, all in the calibration split, embedded into the workdir's cache."""
    root = Path(service.settings.workdir)
    frame = ingest(labelled_folder(root / "cal", offensive=10, ok=10)).accepted
    frame["split"] = "calibration"
    manifest = write_manifest(frame, root / "cal.csv", columns=MANIFEST_COLUMNS)
    X = embed_files(
        [Path(p) for p in frame["path"]], workdir=root, embedder=embedder, progress=False
    )
    return manifest, X, binary_labels(frame["label"].to_numpy())


def test_admin_shadows_promotes_and_rolls_back(svc: Service, embedder: Any) -> None:
    live = _register(
        svc, svc.bundle.with_policy(DecisionPolicy(approve_below=0.0)), "live", ModelStatus.LIVE
    )
    manifest, X, y = _calibration_manifest(svc, embedder)
    scores = svc.bundle.score_embeddings(X)
    catches_all = DecisionPolicy(approve_below=float(scores[y].min()))  # no calibration misses
    cand = _register(
        svc, svc.bundle.with_policy(catches_all), "cand", ModelStatus.CANDIDATE, manifest
    )
    api, rita, admin = svc.api(), svc.reviewer("rita"), svc.reviewer("ada", role="admin")

    assert svc.client().get("/v1/admin/models").status_code == 401
    assert rita.get("/v1/admin/models").status_code == 403
    assert rita.post(f"/v1/admin/models/{cand}/promote", json={}).status_code == 403
    listed = admin.get("/v1/admin/models").json()
    assert (listed["live"], listed["shadow"]) == (live, None)
    assert {v["version"]: v["status"] for v in listed["versions"]} == {
        live: "live",
        cand: "candidate",
    }

    assert admin.post(f"/v1/admin/models/{cand}/shadow").status_code == 200
    upload = svc.upload(api, drawn_photo(1, shape="rectangle")).json()
    assert upload["model_version"] == live  # the registry's live model, picked up at once
    with svc.sessions() as session:
        assert set(registry.shadow_scores(session, cand)) == {upload["id"]}

    (item,) = rita.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    decided = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "offensive"})
    assert decided.status_code == 200  # census of the review band: production evidence

    assert admin.post("/v1/admin/models/nope/promote", json={}).status_code == 404
    unreasoned = admin.post(f"/v1/admin/models/{cand}/promote", json={"override": True})
    assert unreasoned.status_code == 422
    assert unreasoned.json()["detail"]["reason"] == "reason_required"
    body = {"target_recall": 0.8, "confidence": 0.8}
    done = admin.post(f"/v1/admin/models/{cand}/promote", json=body).json()
    assert done["promoted"] and done["passed"] and not done["override"], done
    held_out, production = done["checks"]
    assert held_out["source"] == "held_out" and held_out["certified"]
    assert held_out["candidate_review_rate"] <= held_out["live_review_rate"] == 1.0
    assert (production["source"], production["photos"], production["positives"]) == (
        "production",
        1,
        1,
    )  # the shadow's score of the reviewed upload, re-scored evidence
    assert svc.upload(api, drawn_photo(2)).json()["model_version"] == cand

    back = admin.post("/v1/admin/models/rollback", json={})
    assert back.status_code == 200 and back.json()["version"] == live
    assert svc.upload(api, drawn_photo(3)).json()["model_version"] == live
    missing = admin.post("/v1/admin/models/rollback", json={"version": "nope"})
    assert missing.status_code == 404
    kinds = [e["kind"] for e in admin.get("/v1/admin/models").json()["events"]]
    assert kinds[:3] == ["rolled_back", "promoted", "shadow"]
    page = admin.get("/admin")
    assert page.status_code == 200 and 'id="models"' in page.text and cand in page.text


def test_the_registry_is_read_at_most_every_check_seconds(svc: Service) -> None:
    first = _register(svc, svc.bundle.with_policy(DecisionPolicy(0.2)), "a", ModelStatus.LIVE)
    second = _register(svc, svc.bundle.with_policy(DecisionPolicy(0.3)), "b", ModelStatus.RETIRED)
    now = [0.0]
    target = SimpleNamespace(scorer=svc.app.state.moderator.scorer, shadow=None)
    switcher = ModelSwitcher(svc.sessions, target, check_seconds=60, clock=lambda: now[0])
    switcher.refresh()
    assert version_of(target.scorer) == first
    assert target.scorer.embedder is svc.embedder  # same backbone: the worker's embedder
    with svc.sessions() as session:
        registry.make_live(session, second, actor="t", kind=registry.EventKind.ROLLED_BACK)
        session.commit()
    now[0] = 59.0
    switcher.refresh()
    assert version_of(target.scorer) == first  # not due yet
    now[0] = 60.0
    switcher.refresh()
    assert version_of(target.scorer) == second


def test_a_model_that_cannot_load_or_score_never_fails_an_upload(
    svc: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = svc.upload(svc.api(), drawn_photo(5)).json()["model_version"]
    with svc.sessions() as session:
        registry.register(
            session,
            registry.NewModel("gone", str(tmp_path / "gone")),
            actor="t",
            status=ModelStatus.LIVE,
        )
        session.commit()

    class Broken:
        def score_images(self, images: Any) -> Any:
            raise RuntimeError("shadow exploded")

    svc.app.state.moderator.shadow = ShadowModel("broken", Broken())
    response = svc.upload(svc.api(), drawn_photo(6))
    assert response.status_code == 201, response.text
    assert response.json()["model_version"] == before  # the unloadable live model is skipped
    assert "cannot load model gone" in caplog.text and "shadow model broken" in caplog.text
    with svc.sessions() as session:
        assert registry.shadow_scores(session, "broken") == {}


def test_a_worker_that_loses_the_race_to_adopt_the_bundle_serves_the_winners(
    svc: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers start at once on a fresh database: both read "no live model", one registers
    the configured bundle, and the other's registration finds the row — it must serve that
    model, not die (seen in CI on PostgreSQL: `RegistryError: … registered already` killed the
    second uvicorn worker)."""
    from photosieve.config import Workdir
    from photosieve.service.models import adopt_bundle

    configured = svc.bundle.save(tmp_path / "configured")
    workdir = Workdir(Path(svc.settings.workdir))
    winner = adopt_bundle(svc.sessions, configured, workdir)  # the first worker
    real, reads = registry.with_status, []

    def read_before_the_winner_committed(session: Any, status: ModelStatus) -> Any:
        reads.append(status)
        return None if len(reads) == 1 else real(session, status)

    monkeypatch.setattr(registry, "with_status", read_before_the_winner_committed)
    assert adopt_bundle(svc.sessions, configured, workdir) == winner == svc.bundle.version
    monkeypatch.undo()
    with svc.sessions() as session:
        live = registry.with_status(session, ModelStatus.LIVE)
        assert live is not None and live.version == winner

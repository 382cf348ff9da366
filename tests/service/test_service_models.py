"""The admin model-registry routes (SQLite and PostgreSQL): admin only, shadow scores recorded
without acting, gated promote (override needs a reason), rollback, and the service switching
the model it scores with on the next upload, without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drawing import labelled_folder
from photosieve.bundle import ModelBundle
from photosieve.data.ingest import ingest
from photosieve.data.manifest import write_manifest
from photosieve.policy.bands import DecisionPolicy
from photosieve.records import MANIFEST_COLUMNS, binary_labels
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

    assert admin.post("/v1/admin/models/nope/promote", json={}).status_code == 404
    unreasoned = admin.post(f"/v1/admin/models/{cand}/promote", json={"override": True})
    assert unreasoned.status_code == 422
    assert unreasoned.json()["detail"]["reason"] == "reason_required"
    body = {"target_recall": 0.8, "confidence": 0.8}
    done = admin.post(f"/v1/admin/models/{cand}/promote", json=body).json()
    assert done["promoted"] and done["passed"] and not done["override"], done
    (held_out, *_) = done["checks"]
    assert held_out["source"] == "held_out" and held_out["certified"]
    assert held_out["candidate_review_rate"] <= held_out["live_review_rate"] == 1.0
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

"""Reviewers' decisions become a labelled manifest that ingest accepts (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from photosieve.data.ingest import ingest
from photosieve.feedback.export import export_labels
from service_harness import REVIEW_ALL, Service, drawn_photo


def test_decisions_export_as_ingestable_labels(service: Service, tmp_path: Path) -> None:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    ids = [service.upload(api, drawn_photo(300 + i), f"user{i}").json()["id"] for i in range(4)]
    rita = service.reviewer("rita")
    items = rita.post("/v1/review/claim", json={"limit": 4}).json()["items"]
    labels = {ids[0]: "offensive", ids[1]: "ok", ids[2]: "offensive"}  # ids[3] stays undecided
    decided = {}
    for item in items:
        if item["upload_id"] in labels:
            response = rita.post(
                f"/v1/review/items/{item['id']}/decision",
                json={"label": labels[item["upload_id"]]},
            )
            assert response.status_code == 200, response.text
            decided[item["upload_id"]] = response.json()
    undo_id = decided[ids[2]]["decision_id"]  # an undone decision is not a label
    assert rita.post(f"/v1/review/decisions/{undo_id}/undo").status_code == 200
    del labels[ids[2]]

    out = tmp_path / "feedback" / "labels.csv"
    with service.sessions() as session:
        summary = export_labels(session, service.app.state.images, out)
    frame = pd.read_csv(out)
    assert summary.rows == len(frame) == len(labels)
    assert dict(zip(frame["upload_id"], frame["label"], strict=True)) == labels
    assert set(frame["review_kind"]) == {"model_band"}
    assert set(frame["source"]) == {"primary"}

    result = ingest(out)  # the export feeds the training pipeline as is
    assert len(result.accepted) == len(labels) and len(result.rejected) == 0
    accepted = result.accepted.set_index("upload_id")
    assert (accepted.loc[ids[0], "label"], accepted.loc[ids[1], "label"]) == ("offensive", "ok")

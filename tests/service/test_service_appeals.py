"""Appeals (issue 9): the user's reason reaches the reviewer; the remover never decides the appeal.

On SQLite and PostgreSQL. A removal by the model alone may be decided by any reviewer; a
reviewer's removal (directly, or by confirming the known-bad photo an upload near-matches) is
appealed to someone else: the queue does not hand it to the remover, and a decision by them is
refused with 403 `own_removal`.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from PIL import Image
from sqlalchemy import select, update

from photosieve.store.models import ItemStatus, ReviewItem, Upload, User, utcnow
from service_harness import APPROVE_ALL, REMOVE_ALL, REVIEW_ALL, Service, drawn_photo


def _claim(client: Any) -> list[dict[str, Any]]:
    response = client.post("/v1/review/claim", json={"limit": 10})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _decide(client: Any, item_id: int, label: str) -> Any:
    return client.post(f"/v1/review/items/{item_id}/decision", json={"label": label})


def test_reason_is_stored_and_shown_to_the_reviewer(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    upload = service.upload(api, drawn_photo(1)).json()
    path = f"/v1/uploads/{upload['id']}/appeal"
    too_long = api.post(path, json={"reason": "x" * 1001})
    assert too_long.status_code == 422 and too_long.json()["detail"]["reason"] == "invalid_request"
    nul = api.post(path, json={"reason": "my cat\x00"})
    assert nul.status_code == 422 and nul.json()["detail"]["reason"] == "control_characters"
    with service.sessions() as session:
        row = session.get(Upload, upload["id"])
        assert row is not None and row.appealed_at is None  # refused appeals change nothing
    said = "That is my cat,\nnot anything rude. <b>really</b>"
    appeal = api.post(path, json={"reason": f"  {said}\t"})
    assert appeal.status_code == 200 and appeal.json()["appeal_reason"] == said
    assert api.post(path, json={"reason": "second try"}).json()["appeal_reason"] == said
    (item,) = _claim(service.reviewer("rita"))  # removed by the model: anyone may decide
    assert item["kind"] == "appeal" and item["appeal_reason"] == said
    assert _decide(service.reviewer("rita"), item["id"], "ok").status_code == 200
    # An appeal with no body at all still works.
    other = service.upload(api, drawn_photo(2)).json()
    assert api.post(f"/v1/uploads/{other['id']}/appeal").json()["appeal_reason"] is None


def test_the_reviewer_who_removed_a_photo_does_not_decide_its_appeal(service: Service) -> None:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    upload = service.upload(api, drawn_photo(3)).json()
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    (item,) = _claim(rita)
    assert _decide(rita, item["id"], "offensive").json()["upload_status"] == "removed"
    appeal = api.post(f"/v1/uploads/{upload['id']}/appeal", json={"reason": "it is a cat"})
    assert appeal.status_code == 200 and appeal.json()["appealed"] is True
    assert _claim(rita) == []  # the queue does not offer rita her own removal
    with service.sessions() as session:  # a claim she got anyway (e.g. from before the appeal)
        rita_id = session.scalar(select(User.id).where(User.username == "rita"))
        appeal_id = session.scalar(select(ReviewItem.id).where(ReviewItem.kind == "appeal"))
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.id == appeal_id)
            .values(
                status=ItemStatus.CLAIMED.value,
                claimed_by=rita_id,
                claim_expires_at=utcnow() + dt.timedelta(minutes=5),
            )
        )
        session.commit()
    refused = _decide(rita, appeal_id, "offensive")
    assert refused.status_code == 403 and refused.json()["detail"]["reason"] == "own_removal"
    with service.sessions() as session:
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.id == appeal_id)
            .values(claim_expires_at=utcnow() - dt.timedelta(seconds=1))
        )
        session.commit()
    (item,) = _claim(sam)
    assert item["id"] == appeal_id and item["appeal_reason"] == "it is a cat"
    assert _decide(sam, appeal_id, "offensive").status_code == 200
    again = api.post(f"/v1/uploads/{upload['id']}/appeal")
    assert again.status_code == 409 and again.json()["detail"]["reason"] == "final"


def _recompressed(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def test_a_hash_match_appeal_goes_past_the_reviewer_who_confirmed_the_match(
    service: Service,
) -> None:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    original = drawn_photo(4)
    service.upload(api, original)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    (item,) = _claim(rita)
    _decide(rita, item["id"], "offensive")  # rita confirms: the hash is banked, confirmed
    service.set_policy(APPROVE_ALL)
    copy = service.upload(api, _recompressed(original), "u2").json()
    assert copy["reason"] == "hash_match" and copy["queued_as"] is None
    assert api.post(f"/v1/uploads/{copy['id']}/appeal").status_code == 200
    assert _claim(rita) == []
    (appeal,) = _claim(sam)
    assert appeal["upload_id"] == copy["id"] and appeal["kind"] == "appeal"
    assert _decide(sam, appeal["id"], "ok").json()["upload_status"] == "approved"


def test_undoing_the_removal_withdraws_its_open_appeal(service: Service) -> None:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    upload = service.upload(api, drawn_photo(5)).json()
    rita = service.reviewer("rita")
    (item,) = _claim(rita)
    decision = _decide(rita, item["id"], "offensive").json()
    assert api.post(f"/v1/uploads/{upload['id']}/appeal", json={"reason": "why"}).status_code == 200
    undone = rita.post(f"/v1/review/decisions/{decision['decision_id']}/undo")
    assert undone.status_code == 200 and undone.json()["upload_status"] == "pending_review"
    status = api.get(f"/v1/uploads/{upload['id']}").json()
    assert status["appealed"] is False and status["appeal_reason"] is None
    assert _claim(service.reviewer("sam")) == []  # no orphan appeal left in the queue
    assert [i["id"] for i in _claim(rita)] == [item["id"]]  # rita's item is hers again

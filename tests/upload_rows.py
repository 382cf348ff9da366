"""Upload rows for store-level tests: `new_upload(i, **fields)`, a distinct row per `i`."""

from __future__ import annotations

from typing import Any

from photosieve.store import uploads


def new_upload(i: int, **fields: Any) -> uploads.NewUpload:
    """A review-band upload row with a unique sha256 and pHash; `fields` override any column."""
    row: dict[str, Any] = {
        "user_id": f"u{i}", "sha256": f"{i:064x}", "phash": f"{i:016x}", "image_format": "jpeg",
        "width": 10, "height": 10, "size_bytes": 100, "score": 0.5, "model_version": "v",
        "model_decision": "review", "status": "pending_review", "reason": "model_band",
    }  # fmt: skip
    return uploads.NewUpload(**{**row, **fields})

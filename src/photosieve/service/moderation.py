"""The moderation workflow: score an upload, check the bank, store it, queue it; apply decisions.

`Moderator` is the one place the rules live (routes only translate HTTP):

- upload: decode (within the header limits, reduced for the model) → PDQ (8 rotations/mirrors)
  and pHash of the reduced photo → score (in one model call with concurrent uploads:
  `service.batching`) → known-bad near-match (`hashbank`)? removed : the policy's band
  (approve / review → queue `model_band` / remove → bank; while the drift alarm is raised an
  approval at or above the fail-safe threshold is reviewed instead); a share of approvals is
  queued as `audit`. File and rows are written together (see `storage`). A shadow model, when
  the registry names one, scores the same frames and its score is stored beside the upload,
  never acted on (`service.models`; uploads are then scored unbatched, one backbone pass for
  both heads). Uploads belong to the sending client; with an Idempotency-Key a retry returns the
  first upload (unique per client and key).
- appeal: a removed upload not yet decided on appeal is queued as `appeal`, with the user's
  reason; the reviewer whose decision removed it is recused from deciding it.
- decision and undo: `service.reviewing` (final status, bank, webhook event, queue item).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from photosieve.policy.drift import DriftReport
from photosieve.records import Decision, Label, sha256_bytes
from photosieve.service import hashbank, reviewing
from photosieve.service.batching import ImageScorer, MicroBatcher, ScoredLike
from photosieve.service.config import Settings
from photosieve.service.drift import DriftMonitor
from photosieve.service.metrics import Metrics
from photosieve.service.models import ShadowModel, score_frames
from photosieve.store import bank, evidence, queue, registry, uploads
from photosieve.store.db import begin_write
from photosieve.store.models import (
    ItemKind,
    ReviewDecision,
    Upload,
    UploadReason,
    UploadStatus,
    User,
)
from photosieve.store.pdq_bank import PdqBank
from photosieve.store.photos import PhotoStore
from photosieve.vision.decode import DecodedImage, DecodeLimits, ImageHeader, decode, read_header
from photosieve.vision.pdq import PdqHash

# The model input side assumed when the scorer does not say (EfficientNet-Lite0: 224 px).
DEFAULT_DRAFT_SIZE = 224


_STATUS_FOR = {
    Decision.APPROVE: UploadStatus.APPROVED,
    Decision.REVIEW: UploadStatus.PENDING_REVIEW,
    Decision.REMOVE: UploadStatus.REMOVED,
}


@dataclass(frozen=True)
class UploadOutcome:
    upload: Upload
    queued_as: str | None
    replayed: bool = False  # an earlier upload with the same Idempotency-Key


class IdempotencyKeyReused(ValueError):
    """The client's Idempotency-Key already named an upload with another photo or user_id."""

    reason = "idempotency_key_reused"


def request_fingerprint(sha256: str, user_id: str) -> str:
    """What an idempotent retry must repeat: the photo's bytes and the user_id."""
    return sha256_bytes(f"{sha256}\n{user_id}".encode())


class Moderator:
    """Upload, appeal and review operations over one store, scorer and photo store."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        scorer: ImageScorer,
        images: PhotoStore,
        metrics: Metrics,
        rng: random.Random | None = None,
        batcher: MicroBatcher | None = None,
        pdq_bank: PdqBank | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.scorer = scorer
        self.images = images
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.drift = DriftMonitor(settings, sessions)
        # Concurrent uploads are scored together through it (`service.batching`); without
        # it each upload calls the scorer itself.
        self.batcher = batcher
        # A model scoring uploads in shadow (recorded, never acted on), and the hook that keeps
        # `scorer` and `shadow` in step with the model registry (`service.models`).
        self.shadow: ShadowModel | None = None
        self.refresh_models: Callable[[], None] | None = None
        # The bank's PDQ index (loaded from the database on first use when not given).
        self.pdq_bank = pdq_bank if pdq_bank is not None else PdqBank()

    def warm_up(self) -> None:
        """Pay the first-use costs before the first upload does: the hashes' lazy imports (pHash
        loads scipy's FFT) and the live model's drift verdict (scipy.stats and a database read).
        The app's lifespan calls it before the service takes requests."""
        blank = Image.new("RGB", (64, 64), (127, 127, 127))
        hashbank.phash(blank)
        hashbank.pdq_variants(blank)
        self.drift_report()

    def drift_report(self, *, fresh: bool = False) -> DriftReport:
        """The live model's drift verdict ("re-certification needed" when raised)."""
        return self.drift.report(getattr(self.scorer, "bundle", None), fresh=fresh)

    def production_recall(self, session: Session) -> dict[str, Any] | None:
        """The live model's recall certified on production evidence (census + audits) at its
        approve threshold; None before any evidence or without a calibrated bundle."""
        bundle = getattr(self.scorer, "bundle", None)
        policy = getattr(bundle, "policy", None)
        version = getattr(bundle, "version", None)
        if policy is None or not version:
            return None
        return evidence.production_recall(
            session, version, policy.approve_below, legacy_audit_rate=self.settings.audit_rate,
            confidence=policy.confidence,
        )  # fmt: skip

    # ---- uploads -------------------------------------------------------------------------
    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_pixels=self.settings.max_image_pixels,
            max_side=self.settings.max_image_side,
            max_aspect=self.settings.max_image_aspect,
        )

    def read_header(self, data: bytes) -> ImageHeader:
        """Format and size from the header, within the limits (cheap); ImageDecodeError else."""
        try:
            return read_header(data, self.limits)
        except ValueError as exc:
            self.metrics.upload_rejected(getattr(exc, "reason", "invalid"))
            raise

    def decode_upload(self, data: bytes) -> DecodedImage:
        """Decode an upload as the training photos were, reduced for the model's input size."""
        try:
            return decode(
                data, limits=self.limits, draft_size=self._draft_size(),
                max_frames=self.settings.animation_frames,
            )  # fmt: skip
        except ValueError as exc:
            self.metrics.upload_rejected(getattr(exc, "reason", "invalid"))
            raise

    def moderate_upload(
        self,
        data: bytes,
        user_id: str,
        *,
        api_key_id: int | None = None,
        client_id: int | None = None,
        idempotency_key: str | None = None,
        decoded: DecodedImage | None = None,
    ) -> UploadOutcome:
        """Decide, store and record one upload. Raises ImageDecodeError for bad images.

        `decoded` is the upload already decoded by `decode_upload` (the service decodes under
        its `DecodeGate`); without it the upload is decoded here. With an `idempotency_key`
        (needs `client_id`) a repeat returns the first upload (`replayed=True`) without scoring
        again; the same key with another photo or user_id raises IdempotencyKeyReused. Two
        racing requests with one key make one row: the unique (client, key) index refuses the
        second insert, which then replays the first.
        """
        started = time.perf_counter()
        sha = sha256_bytes(data)
        fingerprint = request_fingerprint(sha, user_id) if idempotency_key else None
        if idempotency_key is not None:
            if client_id is None:
                raise ValueError("an idempotency key needs the client it belongs to")
            replay = self._replay(client_id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        if decoded is None:
            decoded = self.decode_upload(data)
        image = decoded.image
        image_format = decoded.header.format.lower()[:8]
        dims = (decoded.header.width, decoded.header.height)
        # The hash of the reduced photo: imagehash's LANCZOS resize of a full-size one took 15 s.
        image_hash = hashbank.phash(image)
        variants = hashbank.pdq_variants(image)  # (8,) the photo's own PDQ hash first
        # The slow part, outside any transaction. Every sampled frame of an animation is scored
        # and the most offensive-looking one decides: a harmless first frame hides nothing.
        if self.refresh_models is not None:
            self.refresh_models()
        live, shadow = self.scorer, self.shadow  # one snapshot: a switch cannot mix models
        if shadow is None:
            scored = max(self._score(live, decoded.all_frames), key=lambda s: s.score)
            shadow_score = None
        else:
            scored, shadow_score = score_frames(live, shadow, decoded.all_frames)
        decision = Decision(scored.decision)
        # Drift alarm raised: approve only below the fail-safe threshold (`service.drift`).
        safe = self.drift.safe_approve_below(getattr(live, "bundle", None))
        if decision is Decision.APPROVE and safe is not None and scored.score >= safe:
            decision = Decision.REVIEW
        staged = self.images.stage(data, sha)
        new = uploads.NewUpload(
            user_id=user_id,
            sha256=sha,
            phash=image_hash,
            pdq=variants[0].hex,
            pdq_quality=variants[0].quality,
            image_format=image_format,
            width=dims[0],
            height=dims[1],
            size_bytes=len(data),
            score=float(scored.score),
            model_version=scored.model_version,
            model_decision=decision.value,
            status="",  # set by _record
            reason="",
            api_key_id=api_key_id,
            client_id=client_id,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )
        try:
            with self.sessions() as session:
                begin_write(session)
                outcome = self._record(session, new, variants)
                if shadow is not None and shadow_score is not None:
                    registry.record_shadow_score(
                        session, outcome.upload.id, shadow.version, shadow_score
                    )
                session.commit()
        except IntegrityError:
            staged.discard()
            if idempotency_key is None or client_id is None:
                raise
            replay = self._replay(client_id, idempotency_key, fingerprint)
            if replay is None:
                raise
            return replay  # lost the race to a concurrent request with the same key
        except BaseException:
            staged.discard()
            raise
        try:
            staged.publish()
        except BaseException:
            self._forget(outcome.upload.id)
            staged.discard()
            raise
        self.metrics.upload_done(outcome.upload.status, time.perf_counter() - started)
        return outcome

    def _score(self, scorer: ImageScorer, frames: Sequence[Image.Image]) -> Sequence[ScoredLike]:
        if self.batcher is not None:
            return self.batcher.score(scorer, frames)
        return scorer.score_images(frames)

    def _draft_size(self) -> int:
        embedder = getattr(self.scorer, "embedder", None)
        config = getattr(embedder, "config", None)
        preprocess = getattr(config, "preprocess", None)
        size = getattr(preprocess, "decode_size", None)
        return int(size) if size else DEFAULT_DRAFT_SIZE

    def _replay(self, client_id: int, key: str, fingerprint: str | None) -> UploadOutcome | None:
        """The client's earlier upload with this key, if any (checked against this request)."""
        with self.sessions() as session:
            upload = uploads.find_by_idempotency_key(session, client_id, key)
            if upload is None:
                return None
            if upload.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used for a different photo or user_id; "
                    "use a new key for a new upload"
                )
            kind = queue.first_kind_for(session, upload.id)
        if kind == ItemKind.APPEAL.value:  # an appeal re-labels the item it was queued as
            kind = ItemKind.HASH_MATCH.value if upload.reason == UploadReason.HASH_MATCH else None
        return UploadOutcome(upload, kind, replayed=True)

    def _record(
        self,
        session: Session,
        new: uploads.NewUpload,
        variants: list[PdqHash],
    ) -> UploadOutcome:
        image_hash = new.phash
        hit = hashbank.match(
            session,
            image_hash,
            self.settings.hash_match_distance,
            pdq_bank=self.pdq_bank,
            variants=variants,
            pdq_distance=self.settings.pdq_match_distance,
            min_quality=self.settings.pdq_min_quality,
        )
        decision = Decision(new.model_decision)
        if hit is not None:
            status, reason = UploadStatus.REMOVED, UploadReason.HASH_MATCH
        else:
            status, reason = _STATUS_FOR[decision], UploadReason.MODEL_BAND
        # Every model-approved upload is drawn for an audit with this probability, recorded
        # whether or not it is drawn: the production recall certificate weights audits by it.
        audited = self.settings.audit_rate if status is UploadStatus.APPROVED else None
        upload = uploads.insert(
            session,
            dataclasses.replace(
                new,
                status=status.value,
                reason=reason.value,
                matched_upload_id=hit.source_upload_id if hit else None,
                match_distance=hit.distance if hit else None,
                match_hash=hit.hash if hit else None,
                matched_entry_id=hit.entry_id if hit else None,
                audit_probability=audited,
            ),
        )
        kind: ItemKind | None = None
        if hit is not None:
            # A match against a removal no person confirmed is checked by a person too.
            kind = None if hit.confirmed else ItemKind.HASH_MATCH
        elif status is UploadStatus.PENDING_REVIEW:
            kind = ItemKind.MODEL_BAND
        elif audited is not None and self.rng.random() < audited:
            kind = ItemKind.AUDIT
        if status is UploadStatus.REMOVED:
            pdq = reviewing.bankable_pdq(new.pdq, new.pdq_quality, self.settings)
            bank.add(
                session, image_hash, upload.id, confirmed=False,
                pdq=pdq, pdq_quality=new.pdq_quality,
            )  # fmt: skip
        if kind is not None:
            queue.enqueue(session, upload.id, kind)
        return UploadOutcome(upload, kind.value if kind else None)

    def _forget(self, upload_id: str) -> None:
        """Compensate a committed upload whose file could not be published."""
        with self.sessions() as session:
            begin_write(session)
            uploads.delete_with_dependents(session, upload_id)
            session.commit()

    # ---- review (`service.reviewing`) ----------------------------------------------------
    def decide(
        self, session: Session, item_id: int, reviewer: User, label: Label
    ) -> ReviewDecision:
        """Record a reviewer's label for a claimed item and apply it; commits."""
        decision = reviewing.decide(session, item_id, reviewer, label, self.settings)
        self.metrics.decision_made(label.value)
        return decision

    def undo(self, session: Session, decision_id: int, reviewer: User) -> ReviewDecision:
        """Revert the reviewer's own recent decision; the item is theirs again. Commits."""
        return reviewing.undo(session, decision_id, reviewer, self.settings)

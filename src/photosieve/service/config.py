"""Service settings from the environment (`PHOTOSIEVE_*`), read only when `Settings()` is built.

Unsafe values are refused in every environment: a configured secret key that is a known
placeholder (`change-me`, …), shorter than 32 characters or made of a handful of distinct
characters stops the service with a clear message. Without a configured key the service creates
a random one in `<workdir>/service/secret_key` (mode 0600) on first start and reuses it
(`service.secret_key`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from photosieve.config import AUDIT_RATE, Workdir
from photosieve.paths import default_workdir
from photosieve.service.decoding import usable_cores
from photosieve.store.photos import PhotoStore, open_photo_store
from photosieve.store.s3 import parse_s3_url
from photosieve.vision.decode import ANIMATION_FRAMES

MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10
# Secrets copied from examples and templates; refused even when padded ("change-me-please…").
PLACEHOLDER_SECRETS = ("change-me", "changeme", "change_me", "secret", "replace-me", "example")
BATCH_PER_ONNX_THREAD = 4  # the default micro-batch: images per onnxruntime thread


def check_secret(secret: str, origin: str = "PHOTOSIEVE_SECRET_KEY") -> str:
    """`secret` when it is fit to sign session cookies; ValueError saying why not otherwise."""
    how = "set a random one (`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
    lowered = secret.strip().lower()
    if any(word in lowered for word in PLACEHOLDER_SECRETS):
        raise ValueError(f"{origin} is a placeholder ({secret!r}); {how} or leave it unset")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{origin} is too short ({len(secret)} characters, at least {MIN_SECRET_LENGTH}); "
            f"{how} or leave it unset"
        )
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        raise ValueError(f"{origin} is not random (too few distinct characters); {how}")
    return secret


def default_onnx_threads(workers: int = 1) -> int:
    """onnxruntime intra-op threads of each worker's one scoring thread: half the usable cores,
    shared by the workers, at least one — the other half decode, hash and store the uploads
    (with every core on the model, a 2-core box scored slower under load, not faster)."""
    return max(1, usable_cores() // (2 * workers))


def check_storage_url(url: str) -> str:
    """`url` when it names an S3 bucket (`s3://bucket[/prefix]`); ValueError saying why not."""
    try:
        parse_s3_url(url)
    except ValueError:
        raise ValueError(
            f"PHOTOSIEVE_STORAGE_URL must be s3://bucket/prefix, not {url!r}; leave it unset "
            "to keep photos in the folder PHOTOSIEVE_DATA_DIR"
        ) from None
    return url


class Settings(BaseSettings):
    """How the moderation service runs. Every field can be set as `PHOTOSIEVE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PHOTOSIEVE_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    workdir: Path = Field(default_factory=default_workdir)
    # None → SQLite file `<workdir>/service/photosieve.db` (WAL; `config.Workdir`).
    database_url: str | None = None
    # None → `<workdir>/service/images` (content-addressed by SHA-256).
    data_dir: Path | None = None
    # None → photos in the folder `data_dir`; `s3://bucket/prefix` → an S3-compatible bucket
    # (`photosieve[s3]`; credentials from boto3's standard chain), so replicas keep no state.
    storage_url: str | None = None
    # The S3 server (None: AWS, or `AWS_ENDPOINT_URL_S3`) and region (None: boto3's default).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Start-up recovery leaves staged S3 objects younger than this alone: another replica may
    # be committing the upload they belong to.
    storage_stage_grace_seconds: float = Field(default=15 * 60, ge=0)
    # None → `<workdir>/bundle` (the trained bundle of the main job).
    bundle_path: Path | None = None
    # None → a random key kept in `<workdir>/service/secret_key` (created on first start).
    secret_key: str | None = None
    session_https_only: bool = False
    # Absolute lifetime of a reviewer session, and how long it survives without a request.
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    session_idle_seconds: int = Field(default=30 * 60, gt=0)
    # Sign-in throttling: after `login_max_failures` failures for one username (or
    # `login_max_failures_per_address` from one client address) within `login_window_seconds`,
    # sign-in answers 429 for `login_lockout_seconds`, doubling with each further failure.
    login_max_failures: int = Field(default=5, gt=0)
    login_max_failures_per_address: int = Field(default=20, gt=0)
    login_window_seconds: int = Field(default=15 * 60, gt=0)
    login_lockout_seconds: int = Field(default=60, gt=0)
    login_lockout_max_seconds: int = Field(default=15 * 60, gt=0)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # Checked from the header before decoding (see `photosieve.vision.decode`).
    max_image_side: int = Field(default=8192, gt=0)
    max_image_aspect: float = Field(default=20.0, ge=1.0)
    # Frames of an animated upload that are scored (evenly spaced; the highest score decides).
    animation_frames: int = Field(default=ANIMATION_FRAMES, ge=1, le=64)
    # Concurrent decodes (None: the usable cores) and of those, big ones (None: half, ≥ 1).
    decode_slots: int | None = Field(default=None, gt=0)
    heavy_decode_slots: int | None = Field(default=None, gt=0)
    decode_wait_seconds: float = Field(default=30.0, gt=0)
    # Micro-batching (`service.batching`): concurrent uploads are scored in one model call of at
    # most `batch_max` images; under load the scoring thread waits at most `batch_window_ms`
    # after the oldest waiting upload for the batch to fill (never when idle). Past
    # `batch_queue_max` uploads waiting to be scored, an upload gets 503 + Retry-After (below
    # the 40 threads uploads wait in, so the limit is reached before the thread pool's queue).
    # `batch_max` None: `BATCH_PER_ONNX_THREAD` images a thread, so one batch's model time stays
    # ≈ 40 ms on the reference CPU (one-thread cost a photo is flat in the batch size; at 16
    # clients on 2 cores, batches of 4 cut p99 by ~20-30% against 32, bench/README.md).
    batch_max: int | None = Field(default=None, ge=1, le=256)
    batch_window_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    batch_queue_max: int = Field(default=32, ge=1)
    # onnxruntime intra-op threads of the one scoring thread (None: `default_onnx_threads`,
    # half the cores; `photosieve serve --workers N` gives each worker its share of that half).
    onnx_threads: int | None = Field(default=None, gt=0)
    audit_rate: float = Field(default=AUDIT_RATE, ge=0.0, le=1.0)
    claim_ttl_seconds: int = Field(default=600, gt=0)
    claim_batch_max: int = Field(default=50, gt=0)
    undo_window_seconds: int = Field(default=60, ge=0)
    hash_match_distance: int = Field(default=6, ge=0, le=32)  # pHash bits (of 64)
    # PDQ bits (of 256) within which an upload matches a bank entry (HMA's default; the index
    # finds every match up to 31), and the PDQ quality below which a photo is not banked or
    # looked up by PDQ (its pHash still is).
    pdq_match_distance: int = Field(default=31, ge=0, le=31)
    pdq_min_quality: int = Field(default=50, ge=0, le=100)
    # Signed webhooks (`service.webhooks`): a delivery worker thread in each service process.
    webhook_worker: bool = True
    # http:// callbacks to localhost only (development, tests); otherwise https:// is required.
    webhook_allow_http_localhost: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    # The first retry waits this long, each further one twice as long (up to the maximum).
    webhook_backoff_seconds: float = Field(default=30.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    webhook_poll_seconds: float = Field(default=2.0, gt=0)
    # Drift alarm (`service.drift`): the latest `drift_window` uploads of the live model against
    # the calibration reference in its bundle, judged once `drift_min_uploads` are there.
    drift_window: int = Field(default=2000, ge=10)
    drift_min_uploads: int = Field(default=500, ge=1)
    drift_psi_limit: float = Field(default=0.25, gt=0)  # PSI > 0.25: a major shift (usual rule)
    drift_band_p_value: float = Field(default=1e-3, gt=0, lt=1)  # χ² test of the band shares
    drift_check_seconds: float = Field(default=60.0, ge=0)  # how long one verdict is reused
    # While the alarm is raised, approve only below the safe threshold (more goes to people);
    # None: the lowest calibration positive's score (no calibration positive would be approved).
    drift_fail_safe: bool = True
    drift_safe_approve_below: float | None = Field(default=None, ge=0.0, le=1.0)
    # How often a worker reads the model registry for a new live or shadow version (0: before
    # every upload); promote and rollback reach every worker within this time, no restart.
    model_check_seconds: float = Field(default=5.0, ge=0.0)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.secret_key is not None:
            check_secret(self.secret_key)
        if self.storage_url is not None:
            check_storage_url(self.storage_url)
        return self

    @property
    def secret_key_file(self) -> Path:
        """Where the generated secret key lives when none is configured."""
        return self.workdir / "service" / "secret_key"

    @property
    def resolved_onnx_threads(self) -> int:
        return self.onnx_threads if self.onnx_threads is not None else default_onnx_threads()

    @property
    def resolved_batch_max(self) -> int:
        if self.batch_max is not None:
            return self.batch_max
        return BATCH_PER_ONNX_THREAD * self.resolved_onnx_threads

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Workdir(self.workdir).database}"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else Workdir(self.workdir).images

    @property
    def resolved_bundle_path(self) -> Path:
        if self.bundle_path is not None:
            return self.bundle_path
        return Workdir(self.workdir).bundle

    def photo_store(self) -> PhotoStore:
        """The photo store these settings name (no request is made to it here)."""
        return open_photo_store(
            self.resolved_data_dir,
            self.storage_url,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            stage_grace_seconds=self.storage_stage_grace_seconds,
        )

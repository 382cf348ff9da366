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
from photosieve.vision.decode import ANIMATION_FRAMES

MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10
# Secrets copied from examples and templates; refused even when padded ("change-me-please…").
PLACEHOLDER_SECRETS = ("change-me", "changeme", "change_me", "secret", "replace-me", "example")


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


class Settings(BaseSettings):
    """How the moderation service runs. Every field can be set as `PHOTOSIEVE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PHOTOSIEVE_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    workdir: Path = Field(default_factory=default_workdir)
    # None → SQLite file `<workdir>/service/photosieve.db` (WAL; `config.Workdir`).
    database_url: str | None = None
    # None → `<workdir>/service/images` (content-addressed by SHA-256).
    data_dir: Path | None = None
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

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.secret_key is not None:
            check_secret(self.secret_key)
        return self

    @property
    def secret_key_file(self) -> Path:
        """Where the generated secret key lives when none is configured."""
        return self.workdir / "service" / "secret_key"

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

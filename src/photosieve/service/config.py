"""Service settings from the environment (`PHOTOSIEVE_*`), read only when `Settings()` is built.

Unsafe defaults are refused: outside `environment="development"` the service will not start with
the placeholder secret (it signs the reviewers' session cookies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from photosieve.paths import default_workdir

PLACEHOLDER_SECRET = "change-me"


class Settings(BaseSettings):
    """How the moderation service runs. Every field can be set as `PHOTOSIEVE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PHOTOSIEVE_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    workdir: Path = Field(default_factory=default_workdir)
    # None → SQLite file `<workdir>/service/photosieve.db` (WAL).
    database_url: str | None = None
    # None → `<workdir>/service/images` (content-addressed by SHA-256).
    data_dir: Path | None = None
    # None → `<workdir>/bench/bundle` (the trained bundle of the main job).
    bundle_path: Path | None = None
    secret_key: str = PLACEHOLDER_SECRET
    session_https_only: bool = False
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # Checked from the header before decoding (see `photosieve.vision.decode`).
    max_image_side: int = Field(default=8192, gt=0)
    max_image_aspect: float = Field(default=20.0, ge=1.0)
    # Concurrent decodes (None: the usable cores) and of those, big ones (None: half, ≥ 1).
    decode_slots: int | None = Field(default=None, gt=0)
    heavy_decode_slots: int | None = Field(default=None, gt=0)
    decode_wait_seconds: float = Field(default=30.0, gt=0)
    audit_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    claim_ttl_seconds: int = Field(default=600, gt=0)
    claim_batch_max: int = Field(default=50, gt=0)
    undo_window_seconds: int = Field(default=60, ge=0)
    hash_match_distance: int = Field(default=6, ge=0, le=32)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.environment != "development":
            if self.secret_key == PLACEHOLDER_SECRET:
                raise ValueError(
                    f"PHOTOSIEVE_SECRET_KEY is the placeholder {PLACEHOLDER_SECRET!r}; set a "
                    "random secret (e.g. `python -c 'import secrets; print(secrets."
                    "token_urlsafe(32))'`) or use PHOTOSIEVE_ENVIRONMENT=development"
                )
            if len(self.secret_key) < 16:
                raise ValueError("PHOTOSIEVE_SECRET_KEY must be at least 16 characters")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.workdir / 'service' / 'photosieve.db'}"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.workdir / "service" / "images"

    @property
    def resolved_bundle_path(self) -> Path:
        if self.bundle_path is not None:
            return self.bundle_path
        return self.workdir / "bench" / "bundle"

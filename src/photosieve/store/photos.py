"""The photo-storage seam: the `PhotoStore` protocol, its errors, and the factory that picks one.

Photos are content-addressed by SHA-256 and written in two steps so that a photo and its
database rows land together or not at all: `stage()` writes the bytes durably beside their final
place, the caller commits its transaction, then `publish()` moves them into place (or `discard()`
after a failed commit). `recover()` at start-up finishes what a crash interrupted.

Two implementations: `images.FolderStore` (a local folder, the default) and `s3.S3Store` (an
S3-compatible bucket, so API replicas keep no state). Neither hands out public URLs: the reviewer
UI fetches photos through the service, behind its sign-in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

_HEX = frozenset("0123456789abcdef")


class StorageError(OSError):
    """The photo store cannot be reached or refused a write (the request may be retried)."""


def check_sha(sha256: str) -> str:
    """`sha256` when it is a lowercase hex SHA-256; ValueError otherwise."""
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    return sha256


def fanout(sha256: str) -> str:
    """The relative place of a photo: `ab/cd/<sha256>` (the same in a folder and a bucket)."""
    sha = check_sha(sha256)
    return f"{sha[:2]}/{sha[2:4]}/{sha}"


class StagedPhoto(Protocol):
    """Bytes written durably, not yet visible under their SHA-256."""

    def publish(self) -> None:
        """Make the photo visible (after the database commit)."""

    def discard(self) -> None:
        """Remove the staged bytes (after a failed commit)."""


class ServingHold(Protocol):
    """A serving process's hold on a store (a shared file lock for a folder; nothing for S3,
    where staged objects younger than the grace period are left to the replica writing them)."""

    def close(self) -> None:
        """Stop serving."""


class PhotoStore(Protocol):
    """Photos by SHA-256. Identical bytes share one stored photo."""

    @property
    def location(self) -> str:
        """Where the photos live, for messages (a folder path or `s3://bucket/prefix`)."""

    def stage(self, data: bytes, sha256: str) -> StagedPhoto:
        """Write `data` durably where `publish()` can make it visible; StorageError if the
        store cannot take it (nothing is left behind)."""

    def read(self, sha256: str) -> bytes:
        """The stored bytes; FileNotFoundError if absent, StorageError if unreachable."""

    def exists(self, sha256: str) -> bool:
        """Whether a photo with this SHA-256 is published."""

    def delete(self, sha256: str) -> None:
        """Remove a published photo (nothing happens when it is absent)."""

    def photos(self) -> list[str]:
        """The SHA-256 of every published photo (for checks and tests)."""

    def has_photos(self) -> bool:
        """Whether any photo is published (stops at the first one found)."""

    def staged_count(self) -> int:
        """How many staged writes are neither published nor discarded."""

    def recover(self, is_recorded: Callable[[str], bool]) -> tuple[int, int]:
        """After a crash: publish staged photos the database knows, delete the rest.

        Returns (published, deleted). Call at start-up, before serving requests.
        """

    def start_serving(self, is_recorded: Callable[[str], bool]) -> tuple[ServingHold, int, int]:
        """`recover` what is safe to recover beside other serving processes, then hold the store
        while this process serves (`close()` the hold when it stops). Returns (hold, published,
        deleted)."""

    def check_writable(self) -> None:
        """Write and delete a probe where uploads are staged; StorageError if that fails."""

    def local_copy(self, sha256: str, cache: Path) -> Path:
        """A local file holding the photo (the store's own file, or a copy under `cache`)."""


def open_photo_store(
    folder: Path,
    storage_url: str | None = None,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    stage_grace_seconds: float,
) -> PhotoStore:
    """The store at `storage_url` (`s3://bucket/prefix`), or the folder `folder` without one.

    `endpoint_url` and `region` (S3 only; None: boto3's own configuration) point at an
    S3-compatible server; credentials come from boto3's standard chain. `stage_grace_seconds`:
    staged objects younger than this are left alone by `recover` (another replica may be about
    to publish them).
    """
    if storage_url is None:
        from photosieve.store.images import FolderStore

        return FolderStore(folder)
    from photosieve.store.s3 import S3Store, parse_s3_url

    bucket, prefix = parse_s3_url(storage_url)
    return S3Store(
        bucket,
        prefix,
        endpoint_url=endpoint_url,
        region=region,
        stage_grace_seconds=stage_grace_seconds,
    )

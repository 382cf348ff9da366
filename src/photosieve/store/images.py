"""The default photo store: a local folder, `<root>/ab/cd/<sha256>`, written atomically.

An upload's file and its database rows land together or not at all:

1. `stage()` writes the bytes to `<root>/tmp/<sha256>.<random>.tmp` and fsyncs them;
2. the caller commits its database transaction;
3. `StagedImage.publish()` renames the file into place (same filesystem: atomic).

If the commit fails the caller calls `discard()` and nothing remains. If the process dies between
2 and 3, `recover()` at the next start finishes the rename for files the database knows and
deletes the rest. Identical bytes share one file (renaming over it is harmless).

Several processes may serve one store (`uvicorn --workers N`); one that starts while another
serves must not take that one's upload in flight (staged, its row not yet committed) for a
crash's leftover. So `start_serving` recovers and then holds a shared lock on the store for as
long as the process serves: it recovers every staged file only when it can take the lock
exclusively (nobody else serves), and otherwise only files older than `IN_FLIGHT_SECONDS`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from photosieve.store.photos import StorageError, check_sha, fanout

# Longer than any upload spends between staging and publishing (each of its waits is bounded
# by 30 s): a younger staged file may be another serving process's upload in flight.
IN_FLIGHT_SECONDS = 600.0


@dataclass
class StagedImage:
    """A written, not yet published, image file."""

    temp_path: Path
    final_path: Path

    def publish(self) -> None:
        """Move the file into place (after the database commit)."""
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.temp_path, self.final_path)
        except FileNotFoundError:
            if not self.final_path.is_file():  # else: another process's recovery published it
                raise

    def discard(self) -> None:
        """Remove the staged file (after a failed commit)."""
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it; no partial file is left behind on failure."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


class FolderStore:
    """Photos by SHA-256 under one folder (a `PhotoStore`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    @property
    def location(self) -> str:
        return str(self.root)

    def path_for(self, sha256: str) -> Path:
        return self.root / fanout(sha256)

    def stage(self, data: bytes, sha256: str) -> StagedImage:
        """Write `data` durably to a temp file next to its final place; StorageError if the
        folder cannot take it."""
        final = self.path_for(sha256)
        temp = self.tmp / f"{sha256}.{secrets.token_hex(8)}.tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            write_durably(temp, data)
        except OSError as exc:  # a full disk, a folder that is not one
            raise StorageError(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
        return StagedImage(temp, final)

    def read(self, sha256: str) -> bytes:
        """The stored bytes; FileNotFoundError if absent."""
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """Every published file (for checks and tests)."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("??/??/*") if p.is_file()]

    def photos(self) -> list[str]:
        return sorted(p.name for p in self.files())

    def has_photos(self) -> bool:
        """Whether any photo is published (stops at the first one found)."""
        if not self.root.is_dir():
            return False
        return any(p.is_file() for p in self.root.glob("??/??/*"))

    def staged(self) -> list[Path]:
        """Temp files not yet published or discarded."""
        return sorted(self.tmp.glob("*.tmp")) if self.tmp.is_dir() else []

    def staged_count(self) -> int:
        return len(self.staged())

    def recover(
        self, is_recorded: Callable[[str], bool], *, min_age_s: float = 0.0
    ) -> tuple[int, int]:
        """After a crash: publish temp files whose SHA-256 the database knows, delete the rest;
        files younger than `min_age_s` are left alone. Returns (published, deleted).

        Call at start-up, before serving requests (`start_serving` does).
        """
        published = deleted = 0
        now = time.time()
        for temp in self.staged():
            try:
                if now - temp.stat().st_mtime < min_age_s:
                    continue
            except FileNotFoundError:  # published or discarded meanwhile
                continue
            sha = temp.name.split(".", 1)[0]
            try:
                known = is_recorded(check_sha(sha))
            except ValueError:
                known = False
            if known:
                with contextlib.suppress(FileNotFoundError):  # another process recovered it
                    StagedImage(temp, self.path_for(sha)).publish()
                    published += 1
            else:
                temp.unlink(missing_ok=True)
                deleted += 1
        return published, deleted

    def check_writable(self) -> None:
        """Write, fsync and delete a probe file where uploads are staged."""
        probe = self.tmp / f".ready-{secrets.token_hex(8)}"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            write_durably(probe, b"ready")
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink()
            raise StorageError(f"{type(exc).__name__}: {exc.strerror or exc}") from exc

    def local_copy(self, sha256: str, cache: Path) -> Path:
        """The store's own file (no copy is made); FileNotFoundError if absent."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise FileNotFoundError(path)
        return path

    def start_serving(self, is_recorded: Callable[[str], bool]) -> tuple[ServingLock, int, int]:
        """Recover after a crash, then hold the store's serving lock until `close()`.

        Every staged file is recovered when no other process serves the store; beside one, only
        files older than `IN_FLIGHT_SECONDS`. Returns (lock, published, deleted).
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        handle = open(self.tmp / "serving.lock", "ab")  # noqa: SIM115 (held while serving)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            published, deleted = self.recover(
                is_recorded, min_age_s=0.0 if alone else IN_FLIGHT_SECONDS
            )
            fcntl.flock(handle, fcntl.LOCK_SH)  # exclusive → shared; waits for a recovering one
        except BaseException:
            handle.close()
            raise
        return ServingLock(handle), published, deleted


class ServingLock:
    """A process's shared hold on an image store while it serves (see `start_serving`)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def close(self) -> None:
        """Stop serving: the lock goes with the file (as it does when the process dies)."""
        self._handle.close()

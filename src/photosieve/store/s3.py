"""Photos in an S3-compatible bucket (`photosieve[s3]`): `<prefix>/ab/cd/<sha256>`, no public URLs.

The same two-step write as the folder store, so a photo and its rows land together or not at all:
`stage()` PUTs the bytes to `<prefix>/tmp/<sha256>.<random>.tmp` with their SHA-256 checksum
(the server refuses bytes that do not match it), the caller commits, `publish()` copies the
object to its final key on the server and deletes the staged one. `recover()` at start-up
publishes staged objects the database knows and deletes the rest — only those older than the
grace period, because with several stateless replicas a young staged object may belong to a
request another replica is still committing.

The client comes from boto3's standard configuration (credentials chain, `AWS_*` variables),
with `endpoint_url` and `region` set when given (MinIO, Ceph, moto, …).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from photosieve.store.photos import StorageError, check_sha, fanout

_PHOTO_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket[/prefix]`; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not an S3 location (s3://bucket/prefix): {url!r}")
    return parts.netloc, parts.path.strip("/")


def _client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # the optional extra is missing
        raise ValueError("an s3:// photo store needs boto3: pip install 'photosieve[s3]'") from exc
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )


def _is_missing(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code", "")) in _MISSING


@dataclass
class StagedObject:
    """A staged object, not yet copied to its final key."""

    store: S3Store
    temp_key: str
    final_key: str

    def publish(self) -> None:
        """Copy the staged object to its final key on the server, then delete it.

        Once the copy is made the photo is published: a failed delete of the staged object only
        leaves work for the next `recover()`, so it is not an error.
        """
        with self.store.errors():
            try:
                self.store.client.copy_object(
                    Bucket=self.store.bucket,
                    Key=self.final_key,
                    CopySource={"Bucket": self.store.bucket, "Key": self.temp_key},
                )
            except Exception as exc:
                # Another replica's recovery may have published it already.
                if not (_is_missing(exc) and self.store.key_exists(self.final_key)):
                    raise
        with contextlib.suppress(StorageError, FileNotFoundError):
            self.discard()

    def discard(self) -> None:
        """Delete the staged object (after a failed commit)."""
        with self.store.errors():
            self.store.client.delete_object(Bucket=self.store.bucket, Key=self.temp_key)


class _NoHold:
    """An S3 store's serving hold: nothing to release."""

    def close(self) -> None:
        return None


class S3Store:
    """Photos by SHA-256 in one bucket under one prefix (a `PhotoStore`)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        stage_grace_seconds: float,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 photo store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.stage_grace = dt.timedelta(seconds=stage_grace_seconds)
        self.client = client if client is not None else _client(endpoint_url, region)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    @property
    def _tmp(self) -> str:
        return self._key("tmp/")

    def key_for(self, sha256: str) -> str:
        return self._key(fanout(sha256))

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn boto3's errors (other than a missing key) into StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            if _is_missing(exc):
                raise
            raise StorageError(str(exc)) from exc
        except BotoCoreError as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def key_exists(self, key: str) -> bool:
        with self.errors():
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if _is_missing(exc):
                    return False
                raise
        return True

    def _put(self, key: str, data: bytes, sha256: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        with self.errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=checksum)

    def stage(self, data: bytes, sha256: str) -> StagedObject:
        """PUT `data` (checked against `sha256` by the server) under the staging prefix."""
        final = self.key_for(sha256)
        temp = f"{self._tmp}{sha256}.{secrets.token_hex(8)}.tmp"
        self._put(temp, data, sha256)
        return StagedObject(self, temp, final)

    def read(self, sha256: str) -> bytes:
        key = self.key_for(sha256)
        with self.errors():
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if _is_missing(exc):
                    raise FileNotFoundError(f"{self.location}: no photo {sha256}") from exc
                raise
            body: bytes = response["Body"].read()
        return body

    def exists(self, sha256: str) -> bool:
        return self.key_exists(self.key_for(sha256))

    def delete(self, sha256: str) -> None:
        with self.errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        with self.errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                yield from page.get("Contents", [])

    def _photo_shas(self) -> Iterator[str]:
        start = len(self._key(""))
        for obj in self._objects(self._key("")):
            match = _PHOTO_KEY.fullmatch(obj["Key"][start:])
            if match:
                yield match.group(1)

    def photos(self) -> list[str]:
        return sorted(self._photo_shas())

    def has_photos(self) -> bool:
        return next(self._photo_shas(), None) is not None

    def _staged(self) -> list[dict[str, Any]]:
        return [o for o in self._objects(self._tmp) if o["Key"].endswith(".tmp")]

    def staged_count(self) -> int:
        return len(self._staged())

    def recover(self, is_recorded: Callable[[str], bool]) -> tuple[int, int]:
        """Publish staged objects the database knows and delete the rest (past the grace)."""
        published = deleted = 0
        cutoff = dt.datetime.now(dt.UTC) - self.stage_grace
        for obj in self._staged():
            if obj["LastModified"] > cutoff:
                continue  # maybe another replica's upload in flight
            temp = obj["Key"]
            sha = temp[len(self._tmp) :].split(".", 1)[0]
            try:
                known = is_recorded(check_sha(sha))
            except ValueError:
                known = False
            if known:
                StagedObject(self, temp, self.key_for(sha)).publish()
                published += 1
            else:
                StagedObject(self, temp, "").discard()
                deleted += 1
        return published, deleted

    def start_serving(self, is_recorded: Callable[[str], bool]) -> tuple[_NoHold, int, int]:
        """`recover` (staged objects younger than the grace period are another replica's upload
        in flight and left alone); replicas need no lock on a bucket."""
        published, deleted = self.recover(is_recorded)
        return _NoHold(), published, deleted

    def check_writable(self) -> None:
        """PUT and DELETE a probe object under the staging prefix."""
        key = f"{self._tmp}.ready-{secrets.token_hex(8)}"
        with self.errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"ready")
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def local_copy(self, sha256: str, cache: Path) -> Path:
        """A copy under `cache/ab/cd/<sha256>`, downloaded once; FileNotFoundError if absent."""
        path = cache / fanout(sha256)
        if path.is_file():
            return path
        data = self.read(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        temp.write_bytes(data)
        os.replace(temp, path)
        return path

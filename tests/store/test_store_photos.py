"""The photo-store contract, run on both backends: the folder and S3 (moto server, real boto3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from drawing import draw_photo, encode
from photosieve.store.images import FolderStore
from photosieve.store.photos import PhotoStore, StorageError, open_photo_store
from photosieve.store.s3 import S3Store, parse_s3_url
from s3_server import S3_REGION


def _photo(seed: int) -> tuple[bytes, str]:
    data = encode(draw_photo(seed), "JPEG", quality=90)
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> PhotoStore:
    """An empty store of each kind, made by the factory the service uses."""
    if request.param == "folder":
        return open_photo_store(tmp_path / "photos", None, stage_grace_seconds=0)
    bucket = request.getfixturevalue("s3_bucket")
    return open_photo_store(
        tmp_path / "unused",
        f"s3://{bucket}/prod/photos",
        endpoint_url=request.getfixturevalue("s3_endpoint"),
        region=S3_REGION,
        stage_grace_seconds=0,
    )


@pytest.fixture(params=["folder", "s3"])
def broken_store(request: pytest.FixtureRequest, tmp_path: Path) -> PhotoStore:
    """A store that cannot take writes: a folder under a file, a bucket that does not exist."""
    if request.param == "folder":
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"a file where the folder should be")
        return FolderStore(blocker / "photos")
    request.getfixturevalue("s3_bucket")  # credentials in the environment
    return S3Store(
        "no-such-bucket-here",
        endpoint_url=request.getfixturevalue("s3_endpoint"),
        region=S3_REGION,
        stage_grace_seconds=0,
    )


def test_a_staged_photo_is_invisible_until_published(store: PhotoStore) -> None:
    data, sha = _photo(1)
    staged = store.stage(data, sha)
    assert store.staged_count() == 1
    assert not store.exists(sha) and store.photos() == [] and not store.has_photos()
    with pytest.raises(FileNotFoundError):
        store.read(sha)
    staged.publish()
    assert store.exists(sha) and store.read(sha) == data
    assert store.photos() == [sha] and store.has_photos()
    assert store.staged_count() == 0


def test_a_discarded_photo_leaves_nothing(store: PhotoStore) -> None:
    data, sha = _photo(2)
    store.stage(data, sha).discard()
    assert store.staged_count() == 0 and store.photos() == [] and not store.exists(sha)


def test_identical_bytes_share_one_photo_and_delete_removes_it(store: PhotoStore) -> None:
    data, sha = _photo(3)
    other, other_sha = _photo(4)
    for staged in (store.stage(data, sha), store.stage(data, sha), store.stage(other, other_sha)):
        staged.publish()
    assert store.photos() == sorted([sha, other_sha])
    store.delete(sha)
    store.delete(sha)  # deleting what is gone is no error
    assert store.photos() == [other_sha] and not store.exists(sha)
    assert store.read(other_sha) == other


def test_recover_publishes_recorded_photos_and_deletes_orphans(store: PhotoStore) -> None:
    (kept, kept_sha), (orphan, orphan_sha) = _photo(5), _photo(6)
    store.stage(kept, kept_sha)  # the row committed, then the process died before publish
    store.stage(orphan, orphan_sha)  # the process died before the commit
    assert store.recover(lambda sha: sha == kept_sha) == (1, 1)
    assert store.photos() == [kept_sha] and store.read(kept_sha) == kept
    assert store.staged_count() == 0
    assert store.recover(lambda sha: True) == (0, 0)


def test_publishing_what_a_recovery_already_published_is_harmless(store: PhotoStore) -> None:
    """Two replicas on one store: one's start-up recovery may publish another's staged photo
    between that one's commit and its publish."""
    data, sha = _photo(11)
    staged = store.stage(data, sha)
    assert store.recover(lambda _sha: True) == (1, 0)
    staged.publish()
    assert store.photos() == [sha] and store.read(sha) == data and store.staged_count() == 0


def test_a_photo_is_addressed_only_by_a_sha256(store: PhotoStore) -> None:
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError, match="SHA-256"):
            store.stage(b"x", bad)
        with pytest.raises(ValueError, match="SHA-256"):
            store.read(bad)


def test_local_copy_holds_the_bytes(store: PhotoStore, tmp_path: Path) -> None:
    data, sha = _photo(7)
    store.stage(data, sha).publish()
    cache = tmp_path / "cache"
    path = store.local_copy(sha, cache)
    assert path.read_bytes() == data and path.name == sha
    assert store.local_copy(sha, cache) == path
    with pytest.raises(FileNotFoundError):
        store.local_copy("0" * 64, cache)


def test_the_writability_probe_leaves_nothing_behind(store: PhotoStore) -> None:
    store.check_writable()
    assert store.staged_count() == 0 and store.photos() == []


def test_a_store_that_cannot_be_written_says_so(broken_store: PhotoStore) -> None:
    with pytest.raises(StorageError):
        broken_store.check_writable()
    with pytest.raises(StorageError):
        broken_store.stage(*_photo(8))


def test_s3_recovery_leaves_young_staged_objects_to_their_replica(
    s3_bucket: str, s3_endpoint: str
) -> None:
    """Another replica may be between its commit and its publish: within the grace period its
    staged object is neither published nor deleted."""
    store = S3Store(
        s3_bucket, "p", endpoint_url=s3_endpoint, region=S3_REGION, stage_grace_seconds=600
    )
    data, sha = _photo(9)
    store.stage(data, sha)
    assert store.recover(lambda _sha: False) == (0, 0)
    assert store.staged_count() == 1
    # The same bucket and prefix without grace (a later start-up) finishes the job.
    later = S3Store(
        s3_bucket, "p", endpoint_url=s3_endpoint, region=S3_REGION, stage_grace_seconds=0
    )
    assert later.recover(lambda s: s == sha) == (1, 0) and later.read(sha) == data


def test_s3_keys_are_content_addressed_under_the_prefix(s3_bucket: str, s3_endpoint: str) -> None:
    import boto3

    store = S3Store(
        s3_bucket, "/tenant-a/", endpoint_url=s3_endpoint, region=S3_REGION, stage_grace_seconds=0
    )
    data, sha = _photo(10)
    store.stage(data, sha).publish()
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [f"tenant-a/{sha[:2]}/{sha[2:4]}/{sha}"]
    assert store.location == f"s3://{s3_bucket}/tenant-a"


def test_s3_urls_are_checked() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    for bad in ("/var/photos", "https://bucket/x", "s3:///x", "s3://b/x?versionId=1"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            parse_s3_url(bad)


def test_an_unreachable_s3_server_is_a_storage_error(s3_bucket: str) -> None:
    store = S3Store(
        s3_bucket, endpoint_url="http://127.0.0.1:9", region=S3_REGION, stage_grace_seconds=0
    )
    with pytest.raises(StorageError):
        store.read("0" * 64)

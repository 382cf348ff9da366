"""A local S3-compatible server for tests: moto in server mode on a free port, real boto3 calls.

Fixtures (a `pytest_plugins` entry of `conftest.py`): `s3_endpoint` (the server, one per
session) and `s3_bucket` (a fresh, empty bucket per test, with test credentials in the
environment so boto3's standard chain finds them).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

S3_REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server running in this process (over real HTTP)."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on the moto server (its name); credentials set in the environment."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "photosieve-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "photosieve-test-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"photosieve-{secrets.token_hex(6)}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION)
    client.create_bucket(Bucket=name)
    return name

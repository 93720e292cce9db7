"""Fixtures for the sampling tests: a real S3 (moto's server over HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import free_port, wait_for_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
"""Credentials for moto, given the standard way (the environment), and nothing else to find."""


class MotoS3:
    """A moto S3 server that a test can stop and restart on the same port (state survives)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.bucket = f"samples-{uuid.uuid4().hex[:12]}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        """Serve on the fixed port."""
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop serving: connections are refused until start()."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> S3Client:
        """A boto3 client for assertions."""
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def create_bucket(self) -> None:
        """Create this test's bucket."""
        self.client().create_bucket(Bucket=self.bucket)

    def keys(self) -> list[str]:
        """Every key in the bucket."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket)
            for item in page.get("Contents", [])
        ]

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, key -> body."""
        client = self.client()
        return {
            key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for key in self.keys()
        }

    def download(self, target: Path) -> None:
        """Copy the bucket to a directory, keys as relative paths."""
        for key, body in self.objects().items():
            path = target / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)

    def reset(self) -> None:
        """Forget all state (buckets are process-global in moto)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard credential chain points at moto's test credentials only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return AWS_ENV


@pytest.fixture
def moto_s3(aws_env: dict[str, str]) -> Iterator[MotoS3]:
    """A running moto S3 server with an empty bucket."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoS3(free_port())
    server.start()
    server.create_bucket()
    try:
        yield server
    finally:
        if server._server is None:
            server.start()
        server.reset()
        server.stop()

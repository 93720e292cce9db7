"""Fixtures for the reviewer-side tests: moto's S3 over HTTP, and sample trees to read."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.samples.synthetic import Traffic, make_records, write_objects
from tests.sampling.conftest import MotoS3, aws_env, moto_s3

__all__ = ["MotoS3", "aws_env", "moto_s3"]

PREFIX = "team/samples"


def upload_tree(server: MotoS3, root: Path, prefix: str = PREFIX) -> dict[str, bytes]:
    """Upload every file under ``root`` to the bucket under ``prefix``; key -> body."""
    client = server.client()
    uploaded: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            body = path.read_bytes()
            client.put_object(Bucket=server.bucket, Key=key, Body=body)
            uploaded[key] = body
    return uploaded


@pytest.fixture
def sample_tree(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A local sink directory with 200 synthetic records in 8 objects over two hours."""
    root = tmp_path / "samples-data"
    start = time.time() - 3 * 3600
    records = make_records(7, Traffic(), 200, start, span=7200.0)
    write_objects(root, records, per_object=25)
    return root, records

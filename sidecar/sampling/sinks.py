"""Where batches end up: an S3 bucket (AWS, MinIO, R2, moto) or a local directory.

Both take a finished object (key + gzip bytes) and either confirm it or raise; retrying is the
uploader's job. S3 credentials come only from boto3's standard chain (environment, shared
config/credentials files, web identity / IRSA, container or instance metadata): nothing here
reads or stores a secret. The local sink writes the same key layout under ``samples_dir``,
atomically (temporary file, fsync, rename), so a reader never sees half an object.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.config import Settings
from sidecar.sampling.framing import write_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONTENT_TYPE = "application/gzip"
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 20.0


class Sink(Protocol):
    """Writes one object; returns only once it is durable, raises otherwise."""

    def put(self, key: str, body: bytes) -> None: ...

    def describe(self) -> str: ...


class LocalSink:
    """The embedded default: ``samples_dir/<key>`` on the local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, body: bytes) -> None:
        """Write ``body`` under ``root/key`` atomically (replacing any earlier copy)."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file(target, body, mode=0o640)

    def describe(self) -> str:
        return f"file://{self.root.resolve()}"


class S3Sink:
    """PutObject with the configured encryption and storage class; one client per sink."""

    def __init__(self, bucket: str, settings: Settings) -> None:
        self.bucket = bucket
        self.region = settings.s3_region
        self.endpoint_url = settings.s3_endpoint_url
        self._extra: dict[str, Any] = {"ContentType": CONTENT_TYPE}
        if settings.s3_sse:
            self._extra["ServerSideEncryption"] = settings.s3_sse
        if settings.s3_sse == "aws:kms" and settings.s3_kms_key_id:
            self._extra["SSEKMSKeyId"] = settings.s3_kms_key_id
        if settings.s3_storage_class:
            self._extra["StorageClass"] = settings.s3_storage_class
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> S3Client:
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    retries={"mode": "standard", "total_max_attempts": 2},
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                session = boto3.session.Session()
                self._client = session.client(
                    "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config
                )
            return self._client

    def put(self, key: str, body: bytes) -> None:
        """PutObject; raises botocore errors (the uploader counts and retries them)."""
        self._get_client().put_object(Bucket=self.bucket, Key=key, Body=body, **self._extra)

    def describe(self) -> str:
        where = f" via {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}{where}"


def sink_from_settings(settings: Settings) -> tuple[Sink, str]:
    """The configured sink and the key prefix to use with it (none for the local directory)."""
    if settings.s3_bucket:
        return S3Sink(settings.s3_bucket, settings), settings.s3_prefix
    return LocalSink(settings.samples_dir), ""

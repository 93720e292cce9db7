"""``--source``: an S3 location (read through a local cache) or a local sink directory.

Both end up as one local directory holding ``v1/dt=.../hour=.../model=.../*.jsonl.gz``: the
directory itself for a local source (``vllm-sidecar demo`` writes ``./samples-data``), or the
cache that ``pull`` fills for ``s3://bucket/prefix``. The default cache is
``$XDG_CACHE_HOME/vllm-sidecar/samples/<bucket>/<prefix>`` (``~/.cache/...``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sidecar.sampling.layout import LAYOUT_VERSION

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SourceError(ValueError):
    """A ``--source`` that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://bucket/prefix`` with the prefix normalised (no leading or trailing slash)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key_for(self, relative: str) -> str:
        """The full object key of a key relative to the prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative(self, key: str) -> str:
        """The key relative to the prefix."""
        return key[len(self.prefix) + 1 :] if self.prefix else key


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed ``--source``: where the data lives and the local directory that holds it."""

    text: str
    root: Path
    """The local directory with ``v1/...`` (the cache for S3)."""
    s3: S3Location | None = None

    @property
    def is_s3(self) -> bool:
        return self.s3 is not None


def parse_s3_url(text: str) -> S3Location:
    """``s3://bucket[/prefix]`` -> :class:`S3Location`."""
    rest = text[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise SourceError(f"not a valid S3 bucket name in {text!r}")
    return S3Location(bucket, prefix.strip("/"))


def default_cache_root(location: S3Location) -> Path:
    """``$XDG_CACHE_HOME/vllm-sidecar/samples/<bucket>/<prefix>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base) / "vllm-sidecar" / "samples" / location.bucket
    return root / location.prefix if location.prefix else root


def resolve_source(text: str, cache: Path | None = None) -> Source:
    """Parse ``--source`` (and ``--cache``); a local directory must exist."""
    if text.startswith("s3://"):
        location = parse_s3_url(text)
        return Source(text, cache if cache is not None else default_cache_root(location), location)
    if "://" in text:
        raise SourceError(f"--source must be s3://bucket/prefix or a directory, got {text!r}")
    root = Path(text).expanduser()
    if root.name == LAYOUT_VERSION and root.is_dir():
        root = root.parent
    if not root.is_dir():
        raise SourceError(f"--source {text}: no such directory")
    return Source(text, root)

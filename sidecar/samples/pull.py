"""``pull``: copy the sample objects of a time range (and model) from S3 into the local cache.

Listing is by partition prefix (one ``v1/dt=YYYY-MM-DD/`` per day of the range; the whole prefix
when the range has no start), then by hour and model from the key. An object is fetched only when
the manifest does not already hold it with the same size and ETag. Each download goes to a
dot-named ``.partial`` file next to its target, is checked whole (see
:mod:`~sidecar.samples.validate`) and only then renamed into place and written to the manifest,
all in the calling thread; so an interrupted pull (Ctrl-C, ``kill -9``, a dropped connection)
leaves only complete objects behind, and the next pull fetches exactly what is missing.
Corrupt and foreign objects are reported and skipped; they never stop the pull.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.samples.keys import ForeignObject, parse_key
from sidecar.samples.manifest import Entry, Manifest, locked
from sidecar.samples.progress import PullProgress, SilentProgress
from sidecar.samples.source import S3Location
from sidecar.samples.timespec import TimeRange
from sidecar.samples.validate import InvalidObject, ObjectSummary, Skipped, check_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PARTIAL_SUFFIX = ".partial"
DEFAULT_WORKERS = 8
_CHUNK = 1 << 20


class PullError(RuntimeError):
    """The pull could not list the source (bucket missing, access denied, endpoint down)."""


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """A listed object (key relative to the prefix)."""

    key: str
    size: int
    etag: str


@dataclass(slots=True)
class PullResult:
    """What one pull did."""

    listed: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    already_cached: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    """Corrupt or foreign objects (not fatal)."""
    failed: list[Skipped] = field(default_factory=list)
    """Downloads that failed (a later pull retries them)."""


@dataclass(frozen=True, slots=True)
class _Download:
    remote: RemoteObject
    partial: Path
    outcome: ObjectSummary | InvalidObject


def make_s3_client(endpoint_url: str | None, region: str | None, workers: int) -> S3Client:
    """A client from boto3's standard credential chain (``AWS_ENDPOINT_URL`` also works)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "total_max_attempts": 4},
        max_pool_connections=max(workers, 10),
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def _list_prefixes(location: S3Location, time_range: TimeRange, now: float) -> list[str]:
    days = time_range.days(now)
    if days is None:
        return [location.key_for("")]
    return [location.key_for(f"v1/dt={day.isoformat()}/") for day in days]


def list_remote(
    client: S3Client, location: S3Location, time_range: TimeRange, now: float
) -> Iterator[RemoteObject]:
    """Every object under the partition prefixes of ``time_range``."""
    from botocore.exceptions import BotoCoreError, ClientError

    paginator = client.get_paginator("list_objects_v2")
    for prefix in _list_prefixes(location, time_range, now):
        try:
            for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield RemoteObject(
                        location.relative(item["Key"]),
                        int(item.get("Size", 0)),
                        str(item.get("ETag", "")).strip('"'),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise PullError(f"cannot list {location.url}: {exc}") from exc


def _remove_partials(root: Path) -> None:
    """Drop downloads an earlier, interrupted pull left half-written."""
    for stale in root.rglob(f".*{PARTIAL_SUFFIX}"):
        stale.unlink(missing_ok=True)


class _Puller:
    """One pull: plan, download in a small thread pool, commit in the calling thread."""

    def __init__(
        self,
        client: S3Client,
        location: S3Location,
        root: Path,
        progress: PullProgress,
        on_object: Callable[[RemoteObject], None] | None,
    ) -> None:
        self.client = client
        self.location = location
        self.root = root
        self.progress = progress
        self.on_object = on_object
        self.manifest = Manifest.load(root)
        self.result = PullResult()

    def plan(self, time_range: TimeRange, model_slug: str | None, now: float) -> list[RemoteObject]:
        """The objects to fetch; counts cached ones and reports foreign ones on the way."""
        todo: list[RemoteObject] = []
        for remote in list_remote(self.client, self.location, time_range, now):
            try:
                key = parse_key(remote.key)
            except ForeignObject as exc:
                self.result.skipped.append(Skipped(remote.key, "foreign", str(exc)))
                continue
            if not key.in_scope(time_range, model_slug):
                continue
            self.result.listed += 1
            if self.manifest.is_cached(remote.key, remote.size, remote.etag):
                entry = self.manifest.entries[remote.key]
                if entry.status == "ok":
                    self.result.already_cached += 1
                else:
                    self.result.skipped.append(Skipped(remote.key, entry.status, entry.reason))
                continue
            todo.append(remote)
        return todo

    def download(self, remote: RemoteObject) -> _Download:
        """Fetch into a ``.partial`` file and check it (runs in a worker thread)."""
        target = self.root / remote.key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}{PARTIAL_SUFFIX}")
        response = self.client.get_object(
            Bucket=self.location.bucket, Key=self.location.key_for(remote.key)
        )
        etag = str(response.get("ETag", remote.etag)).strip('"')
        size = 0
        try:
            with partial.open("wb") as stream:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    stream.write(chunk)
                    size += len(chunk)
            outcome: ObjectSummary | InvalidObject
            try:
                outcome = check_file(partial)
            except InvalidObject as exc:
                outcome = exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return _Download(RemoteObject(remote.key, size, etag), partial, outcome)

    def commit(self, download: _Download) -> None:
        """Rename a checked object into place and note it (or note why it was refused)."""
        remote, outcome = download.remote, download.outcome
        if isinstance(outcome, InvalidObject):
            download.partial.unlink(missing_ok=True)
            self.result.skipped.append(Skipped(remote.key, outcome.kind, outcome.reason))
            entry = Entry(remote.key, remote.size, remote.etag, outcome.kind, 0, outcome.reason)
        else:
            download.partial.replace(self.root / remote.key)
            entry = Entry(remote.key, remote.size, remote.etag, "ok", outcome.records)
            self.result.fetched += 1
            self.result.fetched_bytes += remote.size
        self.manifest.record(entry)
        self.progress.advance(remote.size)
        if self.on_object is not None:
            self.on_object(remote)

    def fetch_all(self, todo: list[RemoteObject], workers: int) -> None:
        """Download ``todo``; on any interruption, finish nothing half-way."""
        from botocore.exceptions import BotoCoreError, ClientError

        handled: set[Future[_Download]] = set()
        executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="samples-pull")
        futures = {executor.submit(self.download, remote): remote for remote in todo}
        try:
            for future in as_completed(futures):
                handled.add(future)
                try:
                    download = future.result()
                except (BotoCoreError, ClientError, OSError) as exc:
                    remote = futures[future]
                    self.result.failed.append(Skipped(remote.key, "failed", str(exc)))
                    self.progress.advance(remote.size)
                    continue
                self.commit(download)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            for future in futures:
                if future in handled or future.cancelled() or future.exception() is not None:
                    continue
                future.result().partial.unlink(missing_ok=True)


def pull(
    location: S3Location,
    root: Path,
    *,
    client: S3Client,
    time_range: TimeRange | None = None,
    model_slug: str | None = None,
    progress: PullProgress | None = None,
    workers: int = DEFAULT_WORKERS,
    now: float | None = None,
    on_object: Callable[[RemoteObject], None] | None = None,
) -> PullResult:
    """Bring the cache at ``root`` up to date with ``location`` for the range and model.

    ``on_object`` is called after each object is committed (tests use it to interrupt a pull).
    Raises :class:`PullError` when listing fails and
    :class:`~sidecar.samples.manifest.CacheBusyError` when another pull holds the cache.
    """
    window = time_range or TimeRange()
    reporter = progress or SilentProgress()
    with locked(root):
        _remove_partials(root)
        puller = _Puller(client, location, root, reporter, on_object)
        todo = puller.plan(window, model_slug, time.time() if now is None else now)
        reporter.start(len(todo), sum(remote.size for remote in todo))
        try:
            puller.fetch_all(todo, workers)
        finally:
            reporter.finish()
            with contextlib.suppress(OSError):
                puller.manifest.compact()
    return puller.result

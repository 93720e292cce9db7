"""The cache's memory of what it already holds: an append-only JSON-lines manifest.

One line per object the pull finished with, written *after* the object was renamed into place
(or judged corrupt/foreign), so a pull killed at any moment leaves a manifest that only names
complete objects; a torn last line is ignored. The last line for a key wins. An entry matches a
listed object when key, size and ETag are equal, which is what makes pulls incremental (a
re-uploaded object gets a new ETag and is fetched again). Readers use the manifest too: an object
the pull already checked is not checked again on every query.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

MANIFEST_NAME = ".manifest.jsonl"
LOCK_NAME = ".pull.lock"
Status = Literal["ok", "corrupt", "foreign"]


class CacheBusyError(RuntimeError):
    """Another pull is writing to the same cache."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What the cache knows about one object (key relative to the prefix)."""

    key: str
    size: int
    etag: str
    status: Status
    records: int = 0
    reason: str = ""


class Manifest:
    """The manifest of one cache directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / MANIFEST_NAME
        self.entries: dict[str, Entry] = {}
        self._lines = 0

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """Read the manifest (missing = empty); unreadable lines are skipped."""
        manifest = cls(root)
        try:
            text = manifest.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return manifest
        for line in text.splitlines():
            try:
                data = json.loads(line)
                entry = Entry(**data)
            except (json.JSONDecodeError, TypeError):
                continue
            manifest.entries[entry.key] = entry
            manifest._lines += 1
        return manifest

    def is_cached(self, key: str, size: int, etag: str) -> bool:
        """Whether the object is already in the cache, complete and unchanged."""
        entry = self.entries.get(key)
        if entry is None or entry.size != size or entry.etag != etag:
            return False
        if entry.status != "ok":
            return True
        local = self.root / key
        try:
            return local.stat().st_size == size
        except OSError:
            return False

    def trusted(self, key: str, size: int) -> Entry | None:
        """The ``ok`` entry for a local file of this size, if the pull checked it."""
        entry = self.entries.get(key)
        if entry is not None and entry.status == "ok" and entry.size == size:
            return entry
        return None

    def rejected(self) -> list[Entry]:
        """Objects the cache saw and refused (corrupt or foreign)."""
        return [entry for entry in self.entries.values() if entry.status != "ok"]

    def record(self, entry: Entry) -> None:
        """Append one entry and flush it to disk."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
        self.entries[entry.key] = entry
        self._lines += 1

    def compact(self) -> None:
        """Rewrite the manifest with one line per key when it has grown mostly stale."""
        if self._lines <= 2 * len(self.entries) + 100:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as stream:
            for entry in self.entries.values():
                stream.write(json.dumps(asdict(entry), separators=(",", ":")) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(self.path)
        self._lines = len(self.entries)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the cache's pull lock (one pull per cache at a time)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusyError(f"another pull is writing to {root}") from None
        yield
    finally:
        os.close(fd)

"""Progress for long-running reviewer commands: a rich bar on a terminal, plain lines otherwise.

Everything goes to stderr so ``query --format csv > out.csv`` stays clean.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol, TextIO

PLAIN_INTERVAL_SECONDS = 2.0


class PullProgress(Protocol):
    """What ``pull`` reports while it downloads."""

    def start(self, objects: int, total_bytes: int) -> None: ...

    def advance(self, size: int) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    """Reports nothing (library use, tests)."""

    def start(self, objects: int, total_bytes: int) -> None:
        del objects, total_bytes

    def advance(self, size: int) -> None:
        del size

    def finish(self) -> None:
        pass


class PlainProgress:
    """One line every couple of seconds (and at the end) for logs and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.total_bytes = 0
        self.done = 0
        self.done_bytes = 0
        self._last = 0.0

    def start(self, objects: int, total_bytes: int) -> None:
        self.total, self.total_bytes = objects, total_bytes
        self._last = time.monotonic()
        self._line()

    def advance(self, size: int) -> None:
        self.done += 1
        self.done_bytes += size
        if time.monotonic() - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = time.monotonic()
            self._line()

    def finish(self) -> None:
        self._line()

    def _line(self) -> None:
        mib = self.done_bytes / 1048576
        total_mib = self.total_bytes / 1048576
        self.stream.write(
            f"pull: {self.done}/{self.total} objects, {mib:.1f}/{total_mib:.1f} MiB\n"
        )
        self.stream.flush()


class RichProgress:
    """A live bar with objects, bytes, speed and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("pull"),
            BarColumn(),
            TextColumn("{task.fields[objects]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None
        self._done = 0
        self._total = 0

    def start(self, objects: int, total_bytes: int) -> None:
        self._total = objects
        self._progress.start()
        self._task = self._progress.add_task(
            "pull", total=total_bytes, objects=f"0/{objects} objects"
        )

    def advance(self, size: int) -> None:
        self._done += 1
        self._progress.update(
            self._task, advance=size, objects=f"{self._done}/{self._total} objects"
        )

    def finish(self) -> None:
        self._progress.stop()


def pull_progress(enabled: bool | None) -> PullProgress:
    """A bar on a terminal, plain lines when stderr is not one; ``False`` = silent."""
    if enabled is False:
        return SilentProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while something slow runs (a plain line when stderr is not a terminal)."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(message):
            yield
        return
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    yield


class CountProgress(Protocol):
    """Progress over a known number of items (``replay``'s requests)."""

    def start(self, total: int) -> None: ...

    def advance(self, failed: bool = False) -> None: ...

    def finish(self) -> None: ...


class SilentCount:
    """Reports nothing."""

    def start(self, total: int) -> None:
        del total

    def advance(self, failed: bool = False) -> None:
        del failed

    def finish(self) -> None:
        pass


class PlainCount:
    """``label: done/total (n failed)`` every couple of seconds and at the end."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.total = self.done = self.failed = 0
        self._last = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self._last = time.monotonic()
        self._line()

    def advance(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        if time.monotonic() - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = time.monotonic()
            self._line()

    def finish(self) -> None:
        self._line()

    def _line(self) -> None:
        self.stream.write(f"{self.label}: {self.done}/{self.total} ({self.failed} failed)\n")
        self.stream.flush()


class RichCount:
    """A live bar with the count, the rate and the time left."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None
        self._failed = 0

    def start(self, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("count", total=total, failed=0)

    def advance(self, failed: bool = False) -> None:
        self._failed += failed
        self._progress.update(self._task, advance=1, failed=self._failed)

    def finish(self) -> None:
        self._progress.stop()


def count_progress(label: str, enabled: bool | None) -> CountProgress:
    """Like :func:`pull_progress`, for a count of items."""
    if enabled is False:
        return SilentCount()
    if sys.stderr.isatty():
        return RichCount(label)
    return PlainCount(label)

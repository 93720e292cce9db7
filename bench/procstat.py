"""CPU time and memory of server processes, read from ``/proc`` (Linux only).

CPU is ``utime``/``stime`` from ``/proc/<pid>/stat`` (clock ticks, usually 10 ms; threads that
already exited are included). Memory is ``VmRSS`` (now) and ``VmHWM`` (peak) from
``/proc/<pid>/status``. A target made of several processes (nginx: master + worker) is the sum
of its processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU seconds."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident set now and at its peak, in bytes."""

    rss: int
    peak: int


def cpu_times(pids: Iterable[int]) -> CpuTimes:
    """Summed CPU seconds of ``pids`` so far."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return CpuTimes(user / _TICKS, system / _TICKS)


def memory(pids: Iterable[int]) -> Memory:
    """Summed ``VmRSS`` and ``VmHWM`` of ``pids``."""
    rss = peak = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1]) * 1024
    return Memory(rss, peak)


def with_children(pid: int) -> list[int]:
    """``pid`` and its direct children (nginx's workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(child) for child in children)
    return pids


def pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Restrict every thread of ``pids`` to ``cpus`` (threads started later inherit it)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def settle(
    pids: list[int], *, below: float = 0.03, step: float = 0.25, limit: float = 60.0
) -> float:
    """Wait until ``pids`` together use less than ``below`` of a core; the seconds it took.

    Run before every measurement, so work a target defers (a sampler draining its queue) is
    not charged to the next target. Gives up after ``limit`` seconds.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_times(pids).total
        time.sleep(step)
        if (cpu_times(pids).total - before) / step < below:
            break
    return time.monotonic() - started

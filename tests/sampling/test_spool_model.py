"""Model-based test: random append / seal / acknowledge / crash / restart against a plain list."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sidecar.sampling.framing import SpoolEntry, read_segment
from sidecar.sampling.spool import Spool

BASE_MS = 1_700_000_000_000


def _open(directory: Path) -> Spool:
    spool = Spool(directory, max_bytes=1 << 20, segment_max_records=3)
    spool.open()
    return spool


class SpoolMachine(RuleBasedStateMachine):
    """Whatever happens, the files hold exactly the records not yet acknowledged, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = _open(self.root)
        self.pending: list[int] = []
        self.counter = 0

    @rule()
    def append(self) -> None:
        """Append the next record."""
        self.spool.append(SpoolEntry(BASE_MS + self.counter, "m", b'{"n":%d}' % self.counter))
        self.pending.append(self.counter)
        self.counter += 1

    @rule()
    def seal(self) -> None:
        """Seal the open segment early."""
        self.spool.seal()

    @rule()
    def acknowledge_oldest(self) -> None:
        """The sink confirmed the oldest sealed segment: it is removed."""
        sealed = self.spool.sealed_segments()
        if sealed:
            entries, _ = read_segment(sealed[0].path)
            self.spool.remove(sealed[0].seq)
            gone = {entry.ts_ms - BASE_MS for entry in entries}
            self.pending = [n for n in self.pending if n not in gone]

    @rule()
    def crash(self) -> None:
        """The process dies: the kernel closes its files, nothing is sealed or flushed."""
        if self.spool._open_fd is not None:
            os.close(self.spool._open_fd)
        if self.spool._lock_fd is not None:
            os.close(self.spool._lock_fd)
        self.spool = _open(self.root)

    @rule()
    def restart(self) -> None:
        """A clean stop and start."""
        self.spool.close()
        self.spool = _open(self.root)

    @invariant()
    def files_hold_exactly_the_pending_records(self) -> None:
        """Reading every segment file in sequence order gives the pending list."""
        found: list[int] = []
        for path in sorted(p for p in self.root.iterdir() if p.suffix in (".open", ".seg")):
            entries, corrupt = read_segment(path)
            assert corrupt == 0
            found += [entry.ts_ms - BASE_MS for entry in entries]
        assert found == self.pending
        assert self.spool.stats()[1] == len(self.pending)

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.root, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestSpoolModel = SpoolMachine.TestCase

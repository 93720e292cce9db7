"""The spool's line format: one checksummed record per line.

``<crc32 as 8 hex digits> <start time in ms> <model slug> <record JSON>``, ended by a newline;
the CRC covers everything after the first space. Start time and slug sit outside the JSON so the
uploader can partition a segment without parsing records. A reader skips lines that fail the
check (a torn tail after a crash, bit rot) and reports how many, instead of failing. The
durable writes the spool and the local sink share live here too.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled record: its start time and model slug (for partitioning) and its JSON."""

    ts_ms: int
    model_slug: str
    payload: bytes


def frame(entry: SpoolEntry) -> bytes:
    """One spool line for ``entry``."""
    if b"\n" in entry.payload or " " in entry.model_slug or not entry.model_slug:
        raise ValueError("spool payloads are single-line JSON and slugs have no spaces")
    body = b"%d %s %s" % (entry.ts_ms, entry.model_slug.encode("ascii"), entry.payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def unframe(line: bytes) -> SpoolEntry | None:
    """The entry in one line (without its newline), or None if it fails the checksum."""
    crc_hex, _, body = line.partition(b" ")
    if len(crc_hex) != 8:
        return None
    try:
        if int(crc_hex, 16) != zlib.crc32(body):
            return None
        ts_text, slug, payload = body.split(b" ", 2)
        return SpoolEntry(int(ts_text), slug.decode("ascii"), payload)
    except ValueError:
        return None


_RECORD_START = re.compile(rb"^[0-9a-f]{8} -?\d+ \S+ ")


def read_segment(path: Path) -> tuple[list[SpoolEntry], int]:
    """All valid entries of a segment file and how many *records* were lost to corruption.

    A damaged record may span several bad lines (a flipped byte that became a newline), and
    blank or stray lines are no record at all: each bad line that starts like a record counts
    once, and a run of bad lines without any such start counts as one lost record.
    """
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()
    if tail:
        lines.append(tail)  # a last line without its newline is a torn write: never valid
    corrupt = 0
    run_starts = run_lines = 0
    entries: list[SpoolEntry] = []
    for index, line in enumerate(lines):
        entry = None if (tail and index == len(lines) - 1) else unframe(line)
        if entry is None:
            if line:
                run_lines += 1
                run_starts += 1 if _RECORD_START.match(line) else 0
            continue
        corrupt += run_starts or (1 if run_lines else 0)
        run_starts = run_lines = 0
        entries.append(entry)
    corrupt += run_starts or (1 if run_lines else 0)
    return entries, corrupt


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (it may write less in one call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` by ``data`` atomically and durably (temporary file, fsync, rename,
    directory fsync): a reader, or the next start after a crash, sees all of it or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_dir(path.parent)

"""The disk spool: framing, checksums, sealing, restart, the size cap and its policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.sampling.framing import SpoolEntry, frame, read_segment, unframe
from sidecar.sampling.spool import Appended, Spool, SpoolLockedError
from tests.sampling.helpers import dropped, metric


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(number: int, size: int = 40) -> SpoolEntry:
    """A record whose payload is ``size`` bytes of JSON naming ``number``."""
    body = f'{{"n":{number},"pad":"'.encode()
    return SpoolEntry(
        1_700_000_000_000 + number, "model-a", body + b"x" * max(0, size - len(body) - 2) + b'"}'
    )


def numbers(spool: Spool) -> list[int]:
    """Record numbers over all sealed segments, in order."""
    out = []
    for segment in spool.sealed_segments():
        entries, _ = read_segment(segment.path)
        out += [entry.ts_ms - 1_700_000_000_000 for entry in entries]
    return out


def make(tmp_path: Path, **kwargs: object) -> Spool:
    spool = Spool(tmp_path / "spool", **{"max_bytes": 1 << 20, **kwargs})  # type: ignore[arg-type]
    spool.open()
    return spool


def test_frame_round_trip_and_checksum() -> None:
    """A framed line reads back; any flipped byte makes it fail the check."""
    line = frame(entry(7))
    assert unframe(line.rstrip(b"\n")) == entry(7)
    for position in (0, 9, 12, len(line) - 3):
        damaged = bytearray(line.rstrip(b"\n"))
        damaged[position] ^= 0x01
        assert unframe(bytes(damaged)) is None


def test_frame_refuses_multiline_payloads() -> None:
    """The line format cannot carry raw newlines; frame() says so instead of corrupting."""
    with pytest.raises(ValueError, match="single-line"):
        frame(SpoolEntry(1, "m", b"{\n}"))


def test_seal_by_record_count_and_read_back(tmp_path: Path) -> None:
    """Segments seal at segment_max_records; sealed segments read back in order."""
    spool = make(tmp_path, segment_max_records=3)
    outcomes = [spool.append(entry(n)) for n in range(7)]
    assert outcomes.count(Appended.SEALED) == 2
    assert numbers(spool) == list(range(6))
    assert spool.stats()[1] == 7
    spool.close()


def test_seal_by_age(tmp_path: Path) -> None:
    """tick() seals the open segment once it is segment_max_age old."""
    clock = FakeClock()
    spool = make(tmp_path, segment_max_age=5.0, clock=clock)
    spool.append(entry(1))
    assert not spool.tick()
    clock.now += 5.0
    assert spool.tick()
    assert numbers(spool) == [1]
    spool.close()


def test_restart_replays_unsent_records(tmp_path: Path) -> None:
    """A new spool on the same directory finds open and sealed segments and keeps going."""
    spool = make(tmp_path, segment_max_records=2)
    for n in range(5):
        spool.append(entry(n))
    spool.close()
    again = make(tmp_path, segment_max_records=2)
    assert numbers(again) == list(range(5))
    assert again.stats()[1] == 5
    again.append(entry(5))
    again.seal()
    assert numbers(again) == list(range(6))
    again.close()


def test_sequence_numbers_never_repeat(tmp_path: Path) -> None:
    """After every segment was acknowledged and deleted, a restart still uses new numbers."""
    spool = make(tmp_path)
    spool.append(entry(1))
    spool.seal()
    first = spool.sealed_segments()[0].seq
    spool.remove(first)
    spool.close()
    again = make(tmp_path)
    again.append(entry(2))
    again.seal()
    assert again.sealed_segments()[0].seq > first
    again.close()


def test_corrupt_line_is_skipped_and_counted(tmp_path: Path) -> None:
    """A damaged line in the middle costs that record only; the rest read fine."""
    spool = make(tmp_path)
    for n in range(3):
        spool.append(entry(n))
    spool.seal()
    path = spool.sealed_segments()[0].path
    data = bytearray(path.read_bytes())
    second_line = data.index(b"\n") + 20
    data[second_line] ^= 0x20
    path.write_bytes(bytes(data))
    entries, corrupt = read_segment(path)
    assert [e.ts_ms - 1_700_000_000_000 for e in entries] == [0, 2]
    assert corrupt == 1
    spool.close()


def test_torn_tail_after_a_crash_is_skipped(tmp_path: Path) -> None:
    """Half a line at the end (a write cut short) is dropped; whole lines survive."""
    spool = make(tmp_path)
    for n in range(3):
        spool.append(entry(n))
    path = next((tmp_path / "spool").glob("*.open"))
    with path.open("ab") as handle:
        handle.write(frame(entry(3))[:25])
    spool.close()
    again = make(tmp_path)
    assert numbers(again) == [0, 1, 2]
    segment = again.sealed_segments()[0]
    assert read_segment(segment.path)[1] == 1
    again.close()


def test_drop_newest_refuses_new_records_at_the_cap(tmp_path: Path) -> None:
    """At the cap, drop_newest keeps what is there and counts each refused record."""
    line = len(frame(entry(0, size=200)))
    spool = make(tmp_path, max_bytes=line * 10, when_full="drop_newest", segment_max_records=4)
    before = dropped("spool_full")
    outcomes = [spool.append(entry(n, size=200)) for n in range(15)]
    assert outcomes.count(Appended.DROPPED) == 5
    assert dropped("spool_full") - before == 5
    spool.seal()
    assert numbers(spool) == list(range(10))
    assert spool.stats()[0] <= line * 10
    assert metric("vllm_sidecar_spool_capacity_bytes") == line * 10
    spool.close()


def test_drop_oldest_deletes_the_oldest_segment(tmp_path: Path) -> None:
    """At the cap, drop_oldest deletes the oldest segment and counts its records."""
    line = len(frame(entry(0, size=200)))
    spool = make(tmp_path, max_bytes=line * 10, when_full="drop_oldest", segment_max_records=4)
    before = dropped("spool_full")
    outcomes = [spool.append(entry(n, size=200)) for n in range(15)]
    assert Appended.DROPPED not in outcomes
    spool.seal()
    kept = numbers(spool)
    assert kept == list(range(8, 15))
    assert dropped("spool_full") - before == 8
    assert spool.stats()[0] <= line * 10
    spool.close()


def test_drop_oldest_spares_a_segment_being_uploaded(tmp_path: Path) -> None:
    """A claimed segment (upload in flight) is never deleted by the policy."""
    line = len(frame(entry(0, size=200)))
    spool = make(tmp_path, max_bytes=line * 6, when_full="drop_oldest", segment_max_records=3)
    for n in range(3):
        spool.append(entry(n, size=200))
    oldest = spool.sealed_segments()[0]
    assert spool.claim(oldest.seq)
    for n in range(3, 9):
        spool.append(entry(n, size=200))
    spool.seal()
    assert spool.sealed_segments()[0].seq == oldest.seq
    assert numbers(spool)[:3] == [0, 1, 2]
    spool.release(oldest.seq)
    spool.close()


def test_record_larger_than_the_spool_is_dropped(tmp_path: Path) -> None:
    """One record bigger than the whole cap is counted as too_large."""
    spool = make(tmp_path, max_bytes=1000)
    before = dropped("too_large")
    assert spool.append(entry(1, size=5000)) is Appended.DROPPED
    assert dropped("too_large") - before == 1
    spool.close()


def test_second_process_cannot_share_the_directory(tmp_path: Path) -> None:
    """Two spools on one directory would corrupt each other; the second one is refused."""
    spool = make(tmp_path)
    with pytest.raises(SpoolLockedError):
        make(tmp_path)
    spool.close()
    make(tmp_path).close()


def test_gauges_follow_the_spool(tmp_path: Path) -> None:
    """Bytes, records and oldest-record age are exported while records wait."""
    spool = make(tmp_path, wall=lambda: 1_700_000_000.0 + 30.0)
    spool.append(entry(0))
    spool.append(entry(1))
    assert metric("vllm_sidecar_spool_records") == 2
    assert metric("vllm_sidecar_spool_bytes") == spool.stats()[0] > 0
    assert metric("vllm_sidecar_spool_oldest_record_age_seconds") == pytest.approx(30.0)
    spool.seal()
    spool.remove(spool.sealed_segments()[0].seq)
    assert metric("vllm_sidecar_spool_records") == 0
    assert metric("vllm_sidecar_spool_oldest_record_age_seconds") == 0
    spool.close()


def test_files_are_private(tmp_path: Path) -> None:
    """Records hold prompts: the directory and segment files are owner-only."""
    spool = make(tmp_path)
    spool.append(entry(1))
    spool.seal()
    assert (tmp_path / "spool").stat().st_mode & 0o077 == 0
    assert os.stat(spool.sealed_segments()[0].path).st_mode & 0o077 == 0
    spool.close()

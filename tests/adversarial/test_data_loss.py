"""Data loss: sidecars sharing a bucket, replays, and a spool that holds rubbish."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sidecar.sampling.framing import SpoolEntry, frame, read_segment
from sidecar.sampling.pipeline import SamplingPipeline
from sidecar.sampling.spool import Spool
from tests.sampling.conftest import MotoS3
from tests.sampling.helpers import chat_request, exchange, records_of, settings


async def test_two_sidecars_with_default_pod_names_share_a_bucket_without_overwrites(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    """Two sidecars, both with the default pod name, one bucket: every record lands once."""
    pipelines = [
        SamplingPipeline(
            settings(
                tmp_path / name,
                pod_name="local",  # the default when HOSTNAME is unset (systemd unit)
                s3_bucket=moto_s3.bucket,
                s3_region="us-east-1",
                s3_endpoint_url=moto_s3.url,
            )
        )
        for name in ("a", "b")
    ]
    for pipeline in pipelines:
        await pipeline.start()
    for number in range(10):
        pipelines[number % 2].offer(
            exchange(f"req-{number}", request_body=chat_request(f"q {number}")), sampled=True
        )
    for pipeline in pipelines:
        await pipeline.stop(grace=10.0)

    ids = Counter(record["request_id"] for record in records_of(moto_s3.objects()))
    assert ids == Counter(f"req-{number}" for number in range(10))


def test_the_instance_id_is_kept_so_a_replay_writes_the_same_keys(tmp_path: Path) -> None:
    """The id is made once per spool directory: a restart replays under the same keys."""
    first = Spool(tmp_path / "spool", max_bytes=1 << 20)
    first.open()
    made = first.instance_id
    first.close()
    again = Spool(tmp_path / "spool", max_bytes=1 << 20)
    again.open()
    assert again.instance_id == made
    again.close()
    other = Spool(tmp_path / "other", max_bytes=1 << 20)
    other.open()
    assert other.instance_id != made
    other.close()


def test_an_unreadable_spool_entry_never_stops_the_spool_from_opening(tmp_path: Path) -> None:
    """A directory named like a segment (or any unreadable entry) is skipped, not fatal."""
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "000000000007.seg").mkdir()
    good = directory / "000000000003.seg"
    good.write_bytes(frame(SpoolEntry(1, "m", b'{"request_id":"kept"}')))
    spool = Spool(directory, max_bytes=1 << 20)
    spool.open()
    assert [segment.seq for segment in spool.sealed_segments()] == [3]
    spool.close()


def test_the_corruption_count_is_records_not_lines(tmp_path: Path) -> None:
    """One record split by a flipped newline is one lost record; blank lines are none."""
    records = [frame(SpoolEntry(n, "m", b'{"n":%d}' % n)) for n in range(3)]
    damaged = records[1][:14] + b"\n" + records[1][15:]
    path = tmp_path / "000000000001.seg"
    path.write_bytes(records[0] + damaged + b"\n\n" + records[2])
    entries, corrupt = read_segment(path)
    assert [entry.ts_ms for entry in entries] == [0, 2]
    assert corrupt == 1

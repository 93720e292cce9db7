"""``pull`` against moto's S3 over HTTP: incremental, resumable, and tolerant of bad objects."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from sidecar.cli import main
from sidecar.samples.manifest import MANIFEST_NAME, CacheBusyError, Manifest, locked
from sidecar.samples.pull import RemoteObject, make_s3_client, pull
from sidecar.samples.source import S3Location
from sidecar.samples.timespec import TimeRange
from tests.samples.conftest import PREFIX, upload_tree
from tests.samples.synthetic import Traffic, make_records, write_objects
from tests.sampling.conftest import MotoS3

LOCATION_PREFIX = PREFIX


class Interrupted(Exception):
    """Stands in for Ctrl-C half-way through a pull."""


def _client(server: MotoS3, counter: list[str] | None = None) -> Any:
    """A client like the CLI makes; ``counter`` collects the key of every GET sent on the wire."""
    client = make_s3_client(server.url, "us-east-1", 4)
    if counter is not None:

        def count(request: Any, **_: Any) -> None:
            path = unquote(urlsplit(request.url).path)
            counter.append(path.split("/", 2)[2])

        client.meta.events.register("before-send.s3.GetObject", count)
    return client


def _seed_bucket(server: MotoS3, tmp_path: Path, objects: int = 12) -> dict[str, bytes]:
    """Upload ``objects`` valid sample objects spread over three hours."""
    tree = tmp_path / "tree"
    start = time.time() - 4 * 3600
    write_objects(tree, make_records(1, Traffic(), objects * 10, start, 3 * 3600), per_object=10)
    return upload_tree(server, tree)


def _pull(server: MotoS3, cache: Path, **kwargs: Any) -> Any:
    client = kwargs.pop("client", None) or _client(server)
    location = S3Location(server.bucket, LOCATION_PREFIX)
    return pull(location, cache, client=client, workers=4, **kwargs)


def _cached(cache: Path) -> set[str]:
    return {path.relative_to(cache).as_posix() for path in cache.rglob("*.jsonl.gz")}


def test_pull_fetches_everything_once_then_nothing(tmp_path: Path, moto_s3: MotoS3) -> None:
    """A second pull finds every object cached by key, size and ETag and sends no GET."""
    uploaded = _seed_bucket(moto_s3, tmp_path)
    cache = tmp_path / "cache"
    gets: list[str] = []
    first = _pull(moto_s3, cache, client=_client(moto_s3, gets))
    assert first.fetched == len(uploaded) == len(gets)
    assert _cached(cache) == {key.removeprefix(PREFIX + "/") for key in uploaded}
    for key, body in uploaded.items():
        assert (cache / key.removeprefix(PREFIX + "/")).read_bytes() == body
    gets.clear()
    second = _pull(moto_s3, cache, client=_client(moto_s3, gets))
    assert gets == []
    assert second.fetched == 0
    assert second.already_cached == len(uploaded)


def test_interrupted_pull_resumes_with_only_the_missing_objects(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    """Stopped after 5 of 12 objects: nothing half-written remains; the re-run GETs the 7 left."""
    uploaded = _seed_bucket(moto_s3, tmp_path)
    cache = tmp_path / "cache"
    committed: list[str] = []

    def stop_after_five(remote: RemoteObject) -> None:
        committed.append(remote.key)
        if len(committed) == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        _pull(moto_s3, cache, on_object=stop_after_five)
    assert _cached(cache) == set(committed)
    assert not list(cache.rglob("*.partial"))
    assert set(Manifest.load(cache).entries) == set(committed)

    gets: list[str] = []
    resumed = _pull(moto_s3, cache, client=_client(moto_s3, gets))
    missing = {key.removeprefix(PREFIX + "/") for key in uploaded} - set(committed)
    assert {key.removeprefix(PREFIX + "/") for key in gets} == missing
    assert len(gets) == len(uploaded) - 5
    assert resumed.already_cached == 5
    assert len(_cached(cache)) == len(uploaded)


def test_corrupt_and_foreign_objects_are_reported_and_skipped(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    """Bad gzip, bad JSON, another schema, a stray key: reported, skipped, not fetched twice."""
    uploaded = _seed_bucket(moto_s3, tmp_path, objects=4)
    some_key = next(iter(uploaded)).removeprefix(PREFIX + "/")
    partition_dir = some_key.rsplit("/", 1)[0]
    client = moto_s3.client()
    bad = {
        f"{partition_dir}/pod-x-20260101T000000Z-000000000901.jsonl.gz": b"not gzip at all",
        f"{partition_dir}/pod-x-20260101T000000Z-000000000902.jsonl.gz": gzip.compress(
            b'{"schema_version": 1, "request_id": "a", "started_at_unix": 1}\n{broken\n'
        ),
        f"{partition_dir}/pod-x-20260101T000000Z-000000000903.jsonl.gz": gzip.compress(
            json.dumps({"schema_version": 2, "request_id": "b", "started_at_unix": 1}).encode()
        ),
        f"{partition_dir}/notes.txt": b"hello",
        "v1/README.md": b"what is this",
    }
    for key, body in bad.items():
        client.put_object(Bucket=moto_s3.bucket, Key=f"{PREFIX}/{key}", Body=body)

    result = _pull(moto_s3, tmp_path / "cache")
    assert result.fetched == len(uploaded)
    kinds = {item.key: item.kind for item in result.skipped}
    assert kinds == {
        f"{partition_dir}/pod-x-20260101T000000Z-000000000901.jsonl.gz": "corrupt",
        f"{partition_dir}/pod-x-20260101T000000Z-000000000902.jsonl.gz": "corrupt",
        f"{partition_dir}/pod-x-20260101T000000Z-000000000903.jsonl.gz": "foreign",
        f"{partition_dir}/notes.txt": "foreign",
        "v1/README.md": "foreign",
    }
    reasons = " ".join(item.reason for item in result.skipped)
    assert "gzip" in reasons
    assert "line 2 is not valid JSON" in reasons
    assert "schema_version 2" in reasons
    assert _cached(tmp_path / "cache") == {key.removeprefix(PREFIX + "/") for key in uploaded}

    gets: list[str] = []
    again = _pull(moto_s3, tmp_path / "cache", client=_client(moto_s3, gets))
    assert gets == []
    assert len(again.skipped) == len(bad)


def test_range_and_model_filters_list_only_what_is_needed(tmp_path: Path, moto_s3: MotoS3) -> None:
    """``--since/--until`` pick hour partitions; ``--model`` picks the model's partition."""
    tree = tmp_path / "tree"
    start = time.time() - 6 * 3600
    write_objects(tree, make_records(1, Traffic(), 60, start, 5 * 3600), per_object=5)
    other = Traffic(model="mistralai/Mistral-7B")
    write_objects(tree, make_records(2, other, 20, start, 5 * 3600, tag="m"), seq_start=500)
    uploaded = upload_tree(moto_s3, tree)
    newest = max(float(key.split("hour=")[1][:2]) for key in uploaded)
    del newest
    window = TimeRange(start + 2 * 3600, start + 3 * 3600)
    result = _pull(
        moto_s3, tmp_path / "cache", time_range=window, model_slug="mistralai-mistral-7b"
    )
    cached = _cached(tmp_path / "cache")
    assert cached
    assert result.fetched == len(cached)
    assert all("model=mistralai-mistral-7b" in key for key in cached)
    assert len(cached) < sum("mistral" in key for key in uploaded)


def test_reuploaded_object_is_fetched_again(tmp_path: Path, moto_s3: MotoS3) -> None:
    """An object replaced in S3 (new ETag) is not mistaken for the cached copy."""
    uploaded = _seed_bucket(moto_s3, tmp_path, objects=2)
    cache = tmp_path / "cache"
    _pull(moto_s3, cache)
    key = sorted(uploaded)[0]
    replacement = gzip.compress(gzip.decompress(uploaded[key]).splitlines()[0] + b"\n")
    moto_s3.client().put_object(Bucket=moto_s3.bucket, Key=key, Body=replacement)
    gets: list[str] = []
    result = _pull(moto_s3, cache, client=_client(moto_s3, gets))
    assert gets == [key]
    assert result.fetched == 1
    assert (cache / key.removeprefix(PREFIX + "/")).read_bytes() == replacement


def test_one_pull_per_cache(tmp_path: Path) -> None:
    """A second pull into a cache that is being written is refused, not interleaved."""
    with locked(tmp_path), pytest.raises(CacheBusyError), locked(tmp_path):
        pass


def test_cli_pull_reports_and_exits_zero(
    tmp_path: Path, moto_s3: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vllm-sidecar samples pull`` prints skipped objects and a summary on stderr."""
    uploaded = _seed_bucket(moto_s3, tmp_path, objects=3)
    moto_s3.client().put_object(Bucket=moto_s3.bucket, Key=f"{PREFIX}/junk.bin", Body=b"x")
    argv = ["samples", "pull", "--source", f"s3://{moto_s3.bucket}/{PREFIX}"]
    argv += ["--cache", str(tmp_path / "cache"), "--endpoint-url", moto_s3.url, "--since", "now-1d"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"fetched {len(uploaded)} objects" in err
    assert f"pull: {len(uploaded)}/{len(uploaded)} objects" in err, "plain progress lines"
    assert main([*argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{len(uploaded)} already cached" in err
    assert "objects, " not in err


def test_cli_pull_from_a_missing_bucket_fails_cleanly(
    tmp_path: Path, moto_s3: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing errors are one line and exit 1, not a traceback."""
    argv = ["samples", "pull", "--source", "s3://no-such-bucket-here/x"]
    argv += ["--cache", str(tmp_path / "cache"), "--endpoint-url", moto_s3.url]
    assert main(argv) == 1
    assert "cannot list s3://no-such-bucket-here/x" in capsys.readouterr().err


@pytest.mark.slow
def test_pull_killed_with_sigkill_resumes_cleanly(
    tmp_path: Path, moto_s3: MotoS3, processes: Any
) -> None:
    """``kill -9`` mid-pull: the re-run fetches the rest and the cache equals the bucket."""
    uploaded = _seed_bucket(moto_s3, tmp_path, objects=120)
    cache = tmp_path / "cache"
    argv = [
        sys.executable, "-m", "sidecar.cli", "samples", "pull",
        "--source", f"s3://{moto_s3.bucket}/{PREFIX}", "--cache", str(cache),
        "--endpoint-url", moto_s3.url, "--workers", "1",
    ]  # fmt: skip
    child = processes.start(argv, log=tmp_path / "pull.log")
    _wait_for(lambda: _manifest_lines(cache) >= 10 or child.poll() is not None)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    done_before = len(Manifest.load(cache).entries)
    assert 10 <= done_before < len(uploaded), "the pull must be stopped half-way"

    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"fetched {len(uploaded) - done_before} objects" in rerun.stderr
    assert f"{done_before} already cached" in rerun.stderr
    assert not list(cache.rglob("*.partial"))
    for key, body in uploaded.items():
        assert (cache / key.removeprefix(PREFIX + "/")).read_bytes() == body


def _manifest_lines(cache: Path) -> int:
    try:
        return (cache / MANIFEST_NAME).read_text().count("\n")
    except FileNotFoundError:
        return 0


def _wait_for(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)

"""Object keys and batches: Hive layout, deterministic keys and bodies, jittered backoff."""

from __future__ import annotations

import gzip
import random
import re
from datetime import UTC, datetime

from sidecar.sampling.framing import SpoolEntry
from sidecar.sampling.layout import object_key, partition, slug
from sidecar.sampling.uploader import Backoff, batch_objects

KEY = re.compile(
    r"^pfx/v1/dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/model=[a-z0-9._-]+/"
    r"pod-a-\d{8}T\d{6}Z-\d{12}\.jsonl\.gz$"
)


def ms(text: str) -> int:
    """Unix milliseconds of an ISO time (UTC)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_slug() -> None:
    """Model names become safe lower-case path segments."""
    assert slug("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama-llama-3.1-8b-instruct"
    assert slug("  weird name?*  ") == "weird-name"
    assert slug(None) == "unknown"
    assert slug("///") == "unknown"
    assert len(slug("x" * 500)) == 100


def test_partition_and_key_follow_the_documented_layout() -> None:
    """dt/hour come from the UTC start time; the name is pod-firstts-seq."""
    part = partition(ms("2025-03-04T05:06:07.890"), "llama")
    assert part == "dt=2025-03-04/hour=05/model=llama"
    key = object_key("pfx/", part, "pod-a", ms("2025-03-04T05:06:07.890"), 42)
    assert (
        key
        == "pfx/v1/dt=2025-03-04/hour=05/model=llama/pod-a-20250304T050607Z-000000000042.jsonl.gz"
    )
    assert object_key("", part, "pod-a", 0, 1).startswith("v1/dt=")


def test_a_segment_splits_by_partition() -> None:
    """Records of two models and two hours become one object per partition."""
    entries = [
        SpoolEntry(ms("2025-03-04T05:59:00"), "a", b'{"i":1}'),
        SpoolEntry(ms("2025-03-04T06:01:00"), "a", b'{"i":2}'),
        SpoolEntry(ms("2025-03-04T05:58:00"), "b", b'{"i":3}'),
        SpoolEntry(ms("2025-03-04T05:30:00"), "a", b'{"i":4}'),
    ]
    objects = batch_objects(entries, prefix="pfx", pod="pod-a", seq=7)
    assert all(KEY.match(item.key) for item in objects)
    by_key = {item.key: gzip.decompress(item.body).splitlines() for item in objects}
    assert by_key == {
        "pfx/v1/dt=2025-03-04/hour=05/model=a/pod-a-20250304T053000Z-000000000007.jsonl.gz": [
            b'{"i":1}',
            b'{"i":4}',
        ],
        "pfx/v1/dt=2025-03-04/hour=05/model=b/pod-a-20250304T055800Z-000000000007.jsonl.gz": [
            b'{"i":3}'
        ],
        "pfx/v1/dt=2025-03-04/hour=06/model=a/pod-a-20250304T060100Z-000000000007.jsonl.gz": [
            b'{"i":2}'
        ],
    }
    assert sum(item.records for item in objects) == 4


def test_batches_are_byte_identical_on_replay() -> None:
    """The same segment gives the same keys and the same gzip bytes (overwrite, not duplicate)."""
    entries = [SpoolEntry(1_700_000_000_000 + n, "m", b'{"n":%d}' % n) for n in range(50)]
    first = batch_objects(entries, prefix="p", pod="pod-a", seq=3)
    second = batch_objects(list(entries), prefix="p", pod="pod-a", seq=3)
    assert first == second


def test_backoff_is_full_jitter_and_capped() -> None:
    """Delays lie in [0, min(cap, initial * 2**attempt)] and spread across that range."""
    backoff = Backoff(initial=0.5, maximum=8.0)
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8
        assert min(delays) < ceiling * 0.2
    assert backoff.delay(10_000, rng) <= 8.0

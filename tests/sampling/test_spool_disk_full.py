"""A full disk costs counted records, never the process or the records already spooled.

The disk is made "full" with a file-size limit (RLIMIT_FSIZE) in a child process: writes past
it fail with EFBIG exactly where a full volume would fail with ENOSPC, through the same code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sidecar.sampling.framing import read_segment
from sidecar.sampling.spool import Spool

CHILD = """
import json, resource, signal, sys
from pathlib import Path
from sidecar.metrics import REGISTRY
from sidecar.sampling.framing import SpoolEntry
from sidecar.sampling.spool import Appended, Spool

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
spool = Spool(Path(sys.argv[1]), max_bytes=10 << 20, segment_max_records=10_000)
spool.open()
limit = int(sys.argv[2])
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

def record(n):
    return SpoolEntry(1_700_000_000_000 + n, "m", b'{"n":%d,"pad":"%s"}' % (n, b"x" * 150))

full = [spool.append(record(n)).value for n in range(40)]
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is free again
after = [spool.append(record(n)).value for n in range(40, 45)]
spool.close()
print(json.dumps({
    "full": full,
    "after": after,
    "dropped": REGISTRY.get_sample_value(
        "vllm_sidecar_samples_dropped_total", {"reason": "spool_write_failed"}),
}))
"""


def test_full_disk_drops_and_counts_without_crashing(tmp_path: Path) -> None:
    """Appends past the limit are dropped and counted; earlier records stay readable."""
    spool_dir = tmp_path / "spool"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(spool_dir), "2000"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    report = json.loads(result.stdout.splitlines()[-1])  # earlier lines are log output
    stored = report["full"].count("stored")
    failed = report["full"].count("dropped")
    assert 5 <= stored < 40
    assert failed == 40 - stored
    assert report["full"] == ["stored"] * stored + ["dropped"] * failed
    assert report["dropped"] == failed
    assert report["after"] == ["stored"] * 5

    spool = Spool(spool_dir, max_bytes=10 << 20)
    spool.open()
    numbers = []
    corrupt = 0
    for segment in spool.sealed_segments():
        entries, bad = read_segment(segment.path)
        numbers += [json.loads(e.payload)["n"] for e in entries]
        corrupt += bad
    spool.close()
    assert corrupt == 0, "a failed write must not leave a torn line behind"
    assert numbers == [*range(stored), *range(40, 45)]

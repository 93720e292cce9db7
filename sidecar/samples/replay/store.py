"""Candidate answers as v1 sample records, in the same Hive layout as the originals.

A candidate record keeps the original's ``request_id`` (that is how ``compare`` pairs them),
endpoint, model and ``sample_reason``; the request is what was actually sent (after any
``--temperature``/``--seed``/``--target-model`` override); ``deployment`` is the replay's label
and ``pod`` is ``replay``. Timings are the replay client's. Objects are rewritten from the journal
at the end of every (resumed) run, so the directory is always a complete, queryable sample tree:
``vllm-sidecar samples query --source <run dir> "SELECT ..."``.
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.samples.replay.client import Answer
from sidecar.samples.replay.plan import ReplayItem
from sidecar.sampling.layout import LAYOUT_VERSION, object_key, partition, slug

RECORDS_PER_OBJECT = 500
SCHEMA_VERSION = 1
REPLAY_POD = "replay"


def candidate_record(
    item: ReplayItem, body: dict[str, Any], answer: Answer, started: float, label: str
) -> dict[str, Any]:
    """The v1 record of one replayed request."""
    usage = answer.usage or {}
    failed = answer.error is not None or answer.status >= 400 or answer.status == 0
    choices: list[dict[str, Any]] = []
    if not failed:
        choice: dict[str, Any] = {
            "index": 0,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
        }
        if answer.tool_calls:
            choice["tool_calls"] = answer.tool_calls
        choices.append(choice)
    moment = datetime.fromtimestamp(started, tz=UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": item.request_id,
        "model_name": item.model_name,
        "endpoint": item.endpoint,
        "method": "POST",
        "stream": item.stream,
        "status": answer.status,
        "error": answer.error,
        "error_type": answer.error_type,
        "finish_reason": None if failed else answer.finish_reason,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "output_chars": 0 if failed else len(answer.text),
        "n_choices": len(choices),
        "started_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "started_at_unix": started,
        "ttft_seconds": answer.ttft_seconds,
        "e2e_seconds": answer.e2e_seconds,
        "sample_rate": 1.0,
        "sample_reason": item.sample_reason,
        "deployment": label,
        "pod": REPLAY_POD,
        "sidecar_version": __version__,
        "vllm_version": None,
        "key_name": None,
        "redactions": 0,
        "truncated": False,
        "request": body,
        "response": {"choices": choices, "usage": answer.usage, "error": answer.error},
    }


def write_tree(run_dir: Path, records: list[dict[str, Any]]) -> int:
    """Replace the run's ``v1/`` objects with ``records``; returns the number of objects."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: (r["started_at_unix"], r["request_id"])):
        ms = int(record["started_at_unix"] * 1000)
        groups.setdefault(partition(ms, slug(record["model_name"])), []).append(record)
    wanted: set[Path] = set()
    seq = 0
    for part, members in sorted(groups.items()):
        for offset in range(0, len(members), RECORDS_PER_OBJECT):
            batch = members[offset : offset + RECORDS_PER_OBJECT]
            first = int(batch[0]["started_at_unix"] * 1000)
            path = run_dir / object_key("", part, REPLAY_POD, first, seq)
            seq += 1
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(gzip.compress(lines.encode(), mtime=0))
            temporary.replace(path)
            wanted.add(path)
    for stale in (run_dir / LAYOUT_VERSION).rglob("*.jsonl.gz"):
        if stale not in wanted:
            stale.unlink()
    return len(wanted)


def now() -> float:
    """Wall-clock start of a request (records carry Unix time)."""
    return time.time()

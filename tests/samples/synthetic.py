"""Synthetic v1 sample records with controllable traffic, for tests that need many windows fast.

Records are validated against the real :class:`SampleRecord` schema when written to disk, so
what the reviewer side reads here is exactly what the sidecar writes.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from sidecar.sampling.layout import object_key, partition, slug
from sidecar.sampling.schema import SampleRecord, encode

WORDS = ("alpha", "river", "signal", "token", "garden", "quiet", "bright", "system", "model")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True, slots=True)
class Traffic:
    """How the synthetic model behaves in one window."""

    tokens_mean: float = 60.0
    tokens_sigma: float = 0.6
    max_tokens: int = 256
    length_share: float = 0.03
    refusal_share: float = 0.01
    empty_share: float = 0.01
    json_share: float = 0.25
    json_valid_share: float = 0.9
    error_share: float = 0.01
    ttft_median: float = 0.12
    seconds_per_token: float = 0.012
    sample_rate: float = 1.0
    model: str = MODEL
    deployment: str = "blue"
    vllm_version: str = "0.33.0"

    def but(self, **changes: Any) -> Traffic:
        return replace(self, **changes)


def _text(rng: random.Random, tokens: int) -> str:
    """Filler of ``tokens`` words (only its length and opening matter to drift)."""
    word = WORDS[rng.randrange(len(WORDS))]
    return " ".join([word] * tokens)


def make_record(
    rng: random.Random,
    traffic: Traffic,
    index: int,
    started: float,
    tag: str = "r",
    json_prompt: bool | None = None,
) -> dict[str, Any]:
    """One record as the sidecar would write it (plain JSON data).

    ``json_prompt`` fixes whether the prompt asks for JSON (paired data: the same prompt answered
    twice); the draw is made either way so the rest of the stream does not shift.
    """
    wants_json = rng.random() < traffic.json_share
    if json_prompt is not None:
        wants_json = json_prompt
    failed = rng.random() < traffic.error_share
    refused = rng.random() < traffic.refusal_share
    empty = rng.random() < traffic.empty_share
    cut = rng.random() < traffic.length_share
    sigma = traffic.tokens_sigma
    natural = traffic.tokens_mean * math.exp(sigma * rng.gauss(0, 1) - sigma * sigma / 2)
    tokens = traffic.max_tokens if cut else max(1, min(round(natural), traffic.max_tokens))
    finish = "length" if tokens >= traffic.max_tokens else "stop"
    if refused:
        text, tokens, finish = "I'm sorry, but I can't help with that request.", 13, "stop"
    elif empty:
        text, tokens = "", 0
    elif wants_json:
        body = {"answer": _text(rng, max(tokens - 4, 1))}
        text = json.dumps(body) if rng.random() < traffic.json_valid_share else _text(rng, tokens)
    else:
        text = _text(rng, tokens)
    ttft = traffic.ttft_median * math.exp(0.3 * rng.gauss(0, 1))
    e2e = ttft + tokens * traffic.seconds_per_token * math.exp(0.1 * rng.gauss(0, 1))
    prompt = "Answer in JSON: " if wants_json else "Tell me about "
    request: dict[str, Any] = {
        "model": traffic.model,
        "messages": [{"role": "user", "content": prompt + _text(rng, 8)}],
        "max_tokens": traffic.max_tokens,
    }
    choices = [] if failed else [{"index": 0, "text": text, "finish_reason": finish}]
    return {
        "schema_version": 1,
        "request_id": f"{tag}-{index:06d}",
        "model_name": traffic.model,
        "endpoint": "/v1/chat/completions",
        "method": "POST",
        "stream": bool(index % 2),
        "status": 500 if failed else 200,
        "error": None,
        "error_type": "InternalServerError" if failed else None,
        "finish_reason": None if failed else finish,
        "prompt_tokens": 20,
        "completion_tokens": None if failed else tokens,
        "total_tokens": None if failed else tokens + 20,
        "output_chars": 0 if failed else len(text),
        "n_choices": len(choices),
        "started_at": datetime.fromtimestamp(started, tz=UTC).isoformat().replace("+00:00", "Z"),
        "started_at_unix": started,
        "ttft_seconds": None if failed else ttft,
        "e2e_seconds": e2e,
        "sample_rate": traffic.sample_rate,
        "sample_reason": "random",
        "deployment": traffic.deployment,
        "pod": "pod-a",
        "sidecar_version": "0.1.0",
        "vllm_version": traffic.vllm_version,
        "key_name": None,
        "redactions": 0,
        "truncated": False,
        "request": request,
        "response": {"choices": choices, "usage": None, "error": None},
    }


def make_records(
    seed: int, traffic: Traffic, count: int, start: float, span: float = 3600.0, tag: str = "r"
) -> list[dict[str, Any]]:
    """``count`` records spread evenly over ``[start, start + span)``."""
    rng = random.Random(f"{seed}:{tag}")
    return [
        make_record(rng, traffic, index, start + span * index / count, tag)
        for index in range(count)
    ]


def row_of(record: dict[str, Any]) -> dict[str, Any]:
    """What the drift query selects for a record (without going through files and DuckDB)."""
    choices = record["response"]["choices"]
    return {
        **{
            key: record[key]
            for key in (
                "started_at_unix",
                "sample_rate",
                "status",
                "error",
                "finish_reason",
                "output_chars",
                "completion_tokens",
                "ttft_seconds",
                "e2e_seconds",
                "model_name",
                "deployment",
                "vllm_version",
                "sidecar_version",
            )
        },
        "request": record["request"],
        "response_text": choices[0]["text"] if choices else None,
        "tool_calls": 0,
    }


def write_objects(
    root: Path, records: list[dict[str, Any]], *, per_object: int = 50, seq_start: int = 0
) -> list[str]:
    """Write records under ``root`` in the sidecar's layout; returns the relative keys."""
    keys: list[str] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        ms = int(record["started_at_unix"] * 1000)
        groups.setdefault(partition(ms, slug(record["model_name"])), []).append(record)
    seq = seq_start
    for part, members in sorted(groups.items()):
        for offset in range(0, len(members), per_object):
            batch = members[offset : offset + per_object]
            first = min(int(r["started_at_unix"] * 1000) for r in batch)
            key = object_key("", part, batch[0]["pod"], first, seq)
            seq += 1
            lines = b"".join(
                encode(msgspec.convert(r, SampleRecord, strict=False)) + b"\n" for r in batch
            )
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(lines, mtime=0))
            keys.append(key)
    return keys

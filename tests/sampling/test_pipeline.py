"""The pipeline end to end with the embedded local sink: offer, keep-rules, redaction, stop."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from sidecar.sampling.exchange import Sampler
from sidecar.sampling.pipeline import SamplingPipeline
from sidecar.sampling.redact import Redactor
from tests.sampling.helpers import (
    chat_request,
    chat_stream,
    dropped,
    error_json,
    exchange,
    local_objects,
    metric,
    records_of,
    settings,
)
from tests.sampling.test_redact import PLANTED
from tests.support import wait_until


class ExplodingRedactor(Redactor):
    """A redactor with a bug: it raises on any text."""

    def clean_text(self, text: str, counts: Counter[str] | None = None) -> str:
        raise RuntimeError("bug")


def spool_records(tmp_path: Path) -> int:
    """Lines in all spool segment files."""
    return sum(
        path.read_bytes().count(b"\n")
        for path in (tmp_path / "spool").iterdir()
        if path.suffix in (".open", ".seg")
    )


def test_pipeline_satisfies_the_proxy_protocol(tmp_path: Path) -> None:
    """The proxy can hold a SamplingPipeline as a Sampler."""
    sampler: Sampler = SamplingPipeline(settings(tmp_path))
    assert sampler.head_decision("abc", "m") is True


async def test_records_land_in_the_local_layout(tmp_path: Path) -> None:
    """Offered exchanges end up as gzip JSON lines under samples_dir/v1/dt=/hour=/model=/."""
    pipeline = SamplingPipeline(settings(tmp_path))
    await pipeline.start()
    pipeline.upstream_version = "0.33.0"
    written = metric("vllm_sidecar_samples_written_total")
    taken = metric("vllm_sidecar_samples_taken_total", reason="random")
    for n in range(10):
        model = "meta-llama/Llama-3-8B" if n % 2 else "Qwen/Qwen2.5-7B"
        pipeline.offer(exchange(f"req-{n}", model=model), sampled=True)
    await pipeline.stop(grace=5.0)
    objects = local_objects(tmp_path / "samples")
    assert {key.split("/")[3] for key in objects} == {
        "model=meta-llama-llama-3-8b",
        "model=qwen-qwen2.5-7b",
    }
    assert all(key.startswith("v1/dt=") and "/hour=" in key for key in objects)
    records = records_of(objects)
    assert sorted(record["request_id"] for record in records) == sorted(
        f"req-{n}" for n in range(10)
    )
    assert {record["vllm_version"] for record in records} == {"0.33.0"}
    assert {record["deployment"] for record in records} == {"blue"}
    assert metric("vllm_sidecar_samples_written_total") - written == 10
    assert metric("vllm_sidecar_samples_taken_total", reason="random") - taken == 10
    assert metric("vllm_sidecar_upload_last_success_timestamp_seconds") > time.time() - 60
    assert spool_records(tmp_path) == 0


async def test_keep_rules_and_their_budget(tmp_path: Path) -> None:
    """Un-sampled errors, length cut-offs and slow requests are kept until the budget is spent."""
    pipeline = SamplingPipeline(
        settings(
            tmp_path, sample_rate=0.0, sample_keep_slow_seconds=5.0, sample_keep_budget_per_minute=3
        )
    )
    await pipeline.start()
    over_budget = dropped("keep_budget")
    pipeline.offer(exchange("ok"), sampled=False)
    pipeline.offer(
        exchange("err", status=500, response_chunks=[error_json("boom", 500)]), sampled=False
    )
    pipeline.offer(exchange("len", finish_reason="length"), sampled=False)
    pipeline.offer(exchange("slow", e2e_seconds=9.0), sampled=False)
    pipeline.offer(exchange("err2", status=503), sampled=False)
    await pipeline.stop(grace=5.0)
    reasons = {
        r["request_id"]: r["sample_reason"] for r in records_of(local_objects(tmp_path / "samples"))
    }
    assert reasons == {"err": "error", "len": "length", "slow": "slow"}
    assert dropped("keep_budget") - over_budget == 1


async def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    """Past the in-memory bound, offer() drops and counts instead of blocking."""
    pipeline = SamplingPipeline(settings(tmp_path, sample_queue_max_records=3))
    before = dropped("queue_full")
    for n in range(5):
        pipeline.offer(exchange(f"r{n}"), sampled=True)  # not started: nothing drains the queue
    assert dropped("queue_full") - before == 2
    big = SamplingPipeline(settings(tmp_path / "b", sample_memory_max_bytes=1000))
    spent = dropped("memory_budget")
    big.offer(exchange("huge", request_body=b"x" * 2000), sampled=True)
    assert dropped("memory_budget") - spent == 1
    assert big.memory.used == 0


def test_only_post_exchanges_are_sampled(tmp_path: Path) -> None:
    """GET /v1/models and the like carry no prompt: never taken, even when sampled."""
    pipeline = SamplingPipeline(settings(tmp_path))
    listing = exchange("list")
    listing.method = "GET"
    listing.path = "/v1/models"
    pipeline.offer(listing, sampled=True)
    assert pipeline.status()["queue_records"] == 0
    pipeline.offer(exchange("chat"), sampled=True)
    assert pipeline.status()["queue_records"] == 1


def test_offer_never_raises(tmp_path: Path) -> None:
    """A malformed exchange is counted as offer_failed; the caller sees nothing."""
    pipeline = SamplingPipeline(settings(tmp_path))
    before = dropped("offer_failed")
    broken = exchange("x")
    broken.request_body = None  # type: ignore[assignment]
    pipeline.offer(broken, sampled=True)
    assert dropped("offer_failed") - before == 1


def _planted_text() -> str:
    return " | ".join(value for values in PLANTED.values() for value in values)


async def test_planted_secrets_never_reach_the_sink(tmp_path: Path) -> None:
    """Every planted pattern, in prompts, streamed outputs and error bodies, is redacted."""
    planted = _planted_text()
    half = len(planted) // 2
    pipeline = SamplingPipeline(settings(tmp_path, redact_patterns=[r"\bPROJECT-\d+\b"]))
    await pipeline.start()
    pipeline.offer(
        exchange("prompt", request_body=chat_request(planted + " PROJECT-77")), sampled=True
    )
    # The streamed answer carries the secrets split across events (and thus across deltas).
    pieces = [planted[i : i + 7] for i in range(0, len(planted), 7)]
    pipeline.offer(
        exchange(
            "stream",
            request_body=chat_request("x", stream=True),
            response_chunks=chat_stream(*pieces),
            streamed=True,
        ),
        sampled=True,
    )
    pipeline.offer(
        exchange(
            "json",
            response_chunks=[
                json.dumps(
                    {
                        "choices": [
                            {
                                "index": 0,
                                "message": {"content": planted[:half]},
                                "finish_reason": "stop",
                            }
                        ]
                    }
                ).encode()
            ],
        ),
        sampled=True,
    )
    pipeline.offer(
        exchange("error", status=400, response_chunks=[error_json(planted)]), sampled=True
    )
    pipeline.offer(
        exchange(
            "plain-error", status=502, response_chunks=[planted.encode()], error="upstream_connect"
        ),
        sampled=True,
    )
    await pipeline.stop(grace=5.0)
    objects = local_objects(tmp_path / "samples")
    records = records_of(objects)
    assert sorted(r["request_id"] for r in records) == [
        "error",
        "json",
        "plain-error",
        "prompt",
        "stream",
    ]
    everything = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    for values in PLANTED.values():
        for value in values:
            assert value not in everything, value
    assert "PROJECT-77" not in everything
    by_id = {r["request_id"]: r for r in records}
    assert "[REDACTED:email]" in by_id["stream"]["response"]["choices"][0]["text"]
    assert "[REDACTED:card]" in by_id["error"]["response"]["error"]["message"]
    assert "[REDACTED:jwt]" in by_id["plain-error"]["response"]["raw"]
    assert "[REDACTED:custom]" in by_id["prompt"]["request"]["messages"][0]["content"]
    assert metric("vllm_sidecar_redactions_total", kind="iban") > 0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda s: SamplingPipeline(s, redactor=ExplodingRedactor()), id="raising-redactor"
        ),
        pytest.param(
            lambda s: SamplingPipeline(s.replace(redact_patterns=["REDACTED"])),
            id="post-check-fails",
        ),
    ],
)
async def test_redaction_failure_drops_and_counts(tmp_path: Path, make: object) -> None:
    """A record that cannot be proven clean is dropped and counted; nothing is spooled or sent."""
    pipeline: SamplingPipeline = make(settings(tmp_path))  # type: ignore[operator]
    await pipeline.start()
    before = dropped("redaction_failed")
    pipeline.offer(
        exchange("secret", request_body=chat_request("mail bob@example.com")), sampled=True
    )
    await wait_until(lambda: dropped("redaction_failed") - before == 1)
    assert spool_records(tmp_path) == 0
    await pipeline.stop(grace=2.0)
    assert local_objects(tmp_path / "samples") == {}


async def test_unreachable_sink_keeps_records_and_next_start_replays(tmp_path: Path) -> None:
    """When the sink fails, stop() leaves records in the spool and the next start sends them."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the sink directory should be")
    failures = metric("vllm_sidecar_upload_failures_total")
    first = SamplingPipeline(settings(tmp_path, samples_dir=blocked))
    await first.start()
    for n in range(4):
        first.offer(exchange(f"r{n}"), sampled=True)
    started = time.monotonic()
    await first.stop(grace=0.5)
    assert time.monotonic() - started < 2.5
    assert metric("vllm_sidecar_upload_failures_total") > failures
    assert spool_records(tmp_path) == 4

    second = SamplingPipeline(settings(tmp_path))
    await second.start()
    await wait_until(lambda: len(records_of(local_objects(tmp_path / "samples"))) == 4)
    await second.stop(grace=2.0)
    assert spool_records(tmp_path) == 0
    assert sorted(r["request_id"] for r in records_of(local_objects(tmp_path / "samples"))) == [
        "r0",
        "r1",
        "r2",
        "r3",
    ]


async def test_offer_after_stop_is_counted(tmp_path: Path) -> None:
    """An exchange offered after the pipeline stopped is counted as a shutdown drop."""
    pipeline = SamplingPipeline(settings(tmp_path))
    await pipeline.start()
    await pipeline.stop(grace=1.0)
    before = dropped("shutdown")
    pipeline.offer(exchange("late"), sampled=True)
    assert dropped("shutdown") - before == 1
    assert pipeline.status()["state"] == "stopped"


async def test_status_reports_sink_and_spool(tmp_path: Path) -> None:
    """status() tells the admin API where records go and what waits."""
    pipeline = SamplingPipeline(settings(tmp_path))
    await pipeline.start()
    status = pipeline.status()
    assert status["sink"].startswith("file://")
    assert status["state"] == "running"
    assert status["spool_records"] == 0
    await pipeline.stop(grace=1.0)

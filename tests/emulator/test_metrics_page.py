"""/metrics: vLLM 0.33's families exactly, the legacy pages, data-parallel labels, negotiation."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from prometheus_client.metrics_core import Metric

from sidecar.emulator import Emulator
from sidecar.scrape.catalogue import missing_required
from sidecar.scrape.parse import parse_families, parse_snapshot
from tests.emulator.conftest import EmulatorFactory, by_name, scrape

_ROW = re.compile(r"^\| `(vllm:[a-z0-9_:]+)` \| (\w+) \| ([^|]*) \| ([^|]*) \| (.*) \|$")


def _families_table(test_data: Path) -> dict[str, dict[str, object]]:
    """families-0.33.0.md as {exposed name: type, labels, buckets, help}."""
    table: dict[str, dict[str, object]] = {}
    for line in (test_data / "vllm" / "families-0.33.0.md").read_text().splitlines():
        match = _ROW.match(line)
        if not match:
            continue
        name, kind, labels, buckets, help_text = match.groups()
        bucket_text = buckets.split(":")[-1].strip()
        table[name] = {
            "type": kind,
            "labels": {label.strip() for label in labels.split(",") if label.strip()},
            "buckets": [b for b in bucket_text.split(",") if b] if bucket_text else [],
            "help": help_text.strip(),
        }
    return table


def _parsed_name(exposed: str, kind: str) -> str:
    return exposed.removesuffix("_total") if kind == "counter" else exposed


def _labels(family: Metric) -> set[str]:
    return {key for sample in family.samples for key in sample.labels if key != "le"}


def _buckets(family: Metric) -> list[str]:
    first = next(s.labels for s in family.samples if s.name.endswith("_bucket"))
    series = {k: v for k, v in first.items() if k != "le"}
    return [
        s.labels["le"]
        for s in family.samples
        if s.name.endswith("_bucket") and {k: v for k, v in s.labels.items() if k != "le"} == series
    ]


async def test_every_033_family_has_its_type_labels_buckets_and_help(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession, test_data: Path
) -> None:
    """Each family of families-0.33.0.md is on the page exactly as listed; no other vllm: one."""
    table = _families_table(test_data)
    assert len(table) >= 38
    emu = await start_emulator(max_model_len=8192, num_gpu_blocks=1024)
    _, families = await scrape(http, emu)
    page = by_name(families)
    for exposed, spec in table.items():
        family = page[_parsed_name(exposed, str(spec["type"]))]
        assert family.type == spec["type"], exposed
        assert family.documentation == spec["help"], exposed
        assert _labels(family) == spec["labels"], exposed
        if spec["buckets"]:
            assert _buckets(family) == spec["buckets"], exposed
    on_page = {
        name
        for name, family in page.items()
        if name.startswith("vllm:") and not name.endswith("_created")
    }
    assert on_page == {_parsed_name(name, str(spec["type"])) for name, spec in table.items()}


def _always_registered(test_data: Path) -> dict[str, tuple[str, set[str]]]:
    """Section 2.1 of vllm-metrics.md as {exposed name: (type, extra labels)}."""
    text = (test_data / "reference" / "vllm-metrics.md").read_text()
    section = text.split("### 2.1", 1)[1].split("### 2.2", 1)[0]
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.split(" | ")]
        if not line.startswith("| `vllm:") or len(cells) < 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        first = names[0]
        expanded = [
            first[: first.rfind("_queries")] + name[1:] if name.startswith("…") else name
            for name in names
        ]
        extra = set(re.findall(r"`([a-z_]+)`=", cells[2]))
        for name in expanded:
            rows[name] = (cells[1].split()[0], extra)
    return rows


async def test_always_registered_table_is_present_with_engine_and_model_labels(
    emulator: Emulator, http: aiohttp.ClientSession, test_data: Path
) -> None:
    """Every row of the reference's 'always registered' table: right type, labels, engine 0."""
    rows = _always_registered(test_data)
    assert len(rows) >= 30
    _, families = await scrape(http, emulator)
    page = by_name(families)
    for exposed, (kind, extra) in rows.items():
        family = page[_parsed_name(exposed, kind)]
        assert family.type == kind, exposed
        assert family.samples, exposed
        if exposed == "vllm:cache_config_info":
            labels = family.samples[0].labels
            assert labels["engine"] == "0"
            assert labels["num_gpu_blocks"] == str(emulator.options.num_gpu_blocks)
            assert labels["block_size"] == str(emulator.options.block_size)
            continue
        assert _labels(family) == {"model_name", "engine", *extra}, exposed
        assert {s.labels["engine"] for s in family.samples} == {"0"}


async def test_page_parses_into_a_complete_snapshot(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The sidecar's parser accepts the page and finds every metric it requires."""
    async with http.get(f"{emulator.url}/metrics") as response:
        # vLLM >= 0.32 labels its classic text page version=1.0.0 (a real 0.32.0 server did)
        assert response.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
        body = await response.read()
    snapshot = parse_snapshot(
        body, "text/plain; version=1.0.0; charset=utf-8", timestamp=0.0, monotonic=0.0
    )
    assert missing_required(snapshot.present) == []
    assert snapshot.models() == [emulator.options.model]
    assert snapshot.info["num_gpu_blocks"] == str(emulator.options.num_gpu_blocks)
    assert snapshot.start_time is not None


async def test_single_server_page_layout_matches_the_reference(
    emulator: Emulator, http: aiohttp.ClientSession, test_data: Path
) -> None:
    """python_/process_ families first, every counter/histogram with _created, http_ last."""
    body, families = await scrape(http, emulator)
    names = [family.name for family in families]
    reference = parse_families((test_data / "vllm" / "v1-1model.prom").read_bytes(), "text/plain")
    assert names[:10] == [family.name for family in reference][:10]
    assert names[-1].startswith("http_")
    for family in families:
        if family.name.startswith("vllm:") and family.type in {"counter", "histogram"}:
            assert f"{family.name}_created" in names, family.name
    assert b'le="+Inf"' in body


async def test_v06_page_is_the_multiprocess_legacy_layout(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession, test_data: Path
) -> None:
    """v0.6: the 0.6.3 families in order, model_name only, no _created/python_, _sum first."""
    emu = await start_emulator(metrics_profile="v0.6")
    body, families = await scrape(http, emu)
    reference = parse_families(
        (test_data / "vllm" / "v0.6.3-multiproc.prom").read_bytes(), "text/plain"
    )
    assert [(f.name, f.type, f.documentation) for f in families] == [
        (f.name, f.type, f.documentation) for f in reference
    ]
    for family in families:
        if family.name != "vllm:cache_config_info":
            assert _labels(family) <= {"model_name", "finished_reason"}, family.name
    text = body.decode()
    assert "_created" not in text
    assert "python_" not in text
    assert text.index("vllm:time_to_first_token_seconds_sum") < text.index(
        "vllm:time_to_first_token_seconds_bucket"
    )
    assert 'vllm:gpu_prefix_cache_hit_rate{model_name="' in text
    async with http.get(f"{emu.url}/version") as response:
        assert await response.json() == {"version": "0.6.3"}


async def test_v09_page_has_old_and_new_names_with_equal_values(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """v0.9: gpu_cache_usage_perc beside kv_cache_usage_perc, gpu_prefix_* beside prefix_*."""
    emu = await start_emulator(metrics_profile="v0.9", kv_pressure=0.5)
    _, families = await scrape(http, emu)
    page = by_name(families)
    for old, new in (
        ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("vllm:gpu_prefix_cache_queries", "vllm:prefix_cache_queries"),
    ):
        assert [s.value for s in page[old].samples] == [s.value for s in page[new].samples]
    assert page["vllm:kv_cache_usage_perc"].samples[0].value >= 0.49
    assert "vllm:time_per_output_token_seconds" in page
    assert "vllm:inter_token_latency_seconds" not in page
    assert "vllm:num_requests_waiting_by_reason" not in page


async def test_data_parallel_engines_are_labelled_and_page_is_multiprocess(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """--data-parallel 3: engine="0".."2" on every per-engine series, no _created (multiprocess)."""
    emu = await start_emulator(data_parallel=3)
    body, families = await scrape(http, emu)
    page = by_name(families)
    for name in ("vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:cache_config_info"):
        assert {s.labels["engine"] for s in page[name].samples} == {"0", "1", "2"}
    assert b"_created" not in body
    assert b"process_start_time_seconds" not in body


async def test_openmetrics_accept_gets_openmetrics_that_the_parser_folds_back(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Like vLLM's ``/metrics/`` mount: OpenMetrics on request (vllm_ escaping), parseable by us.

    ``/metrics`` (no slash) ignores Accept on vLLM >= 0.32, so only ``/metrics/`` negotiates.
    """
    accept = "application/openmetrics-text; version=1.0.0"
    async with http.get(f"{emulator.url}/metrics", headers={"Accept": accept}) as response:
        assert response.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    async with http.get(f"{emulator.url}/metrics/", headers={"Accept": accept}) as response:
        content_type = response.headers["Content-Type"]
        body = await response.read()
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"vllm_kv_cache_usage_perc{" in body
    names = {family.name for family in parse_families(body, content_type)}
    assert {"vllm:kv_cache_usage_perc", "vllm:request_success"} <= names

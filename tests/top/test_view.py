"""The live view reads at 80-120 columns, shows alerts, and forecasts only what really rises.

Rendered with rich's recording console, as a terminal of that width would show it.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from rich.console import Console

from sidecar.top import sidecar_url
from sidecar.topview import WIDE_COLUMNS, Recent, active_alerts, render

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _target(**changes: Any) -> dict[str, Any]:
    target: dict[str, Any] = {
        "model_name": MODEL,
        "engine": None,
        "ttft_seconds": {"1m": {"0.5": 0.042, "0.99": 1.5}, "5m": {"0.5": 0.05, "0.99": 2.25}},
        "e2e_latency_seconds": {
            "1m": {"0.5": 3.0, "0.99": 9.0},
            "5m": {"0.5": 3.5, "0.99": 12.0},
        },
        "requests_running": 12.0,
        "requests_waiting": 3.0,
        "queue_growth_per_second": 0.25,
        "kv_cache_usage_ratio": 0.91,
        "kv_cache_seconds_to_full": 90.0,
        "error_ratio": {"1m": 0.02, "5m": 0.01},
        "requests_per_second": {"1m": 3.2, "5m": 2.4},
    }
    target.update(changes)
    return target


def _payload(*targets: dict[str, Any]) -> dict[str, Any]:
    return {"scrape": {"ready": True, "vllm_version": "0.33.0"}, "signals": {"targets": targets}}


def _walk(kv: list[float], waiting: list[float]) -> Recent:
    """A Recent that has seen these readings, two seconds apart."""
    recent = Recent()
    for step, (usage, queue) in enumerate(zip(kv, waiting, strict=True)):
        recent.observe(
            _payload(_target(kv_cache_usage_ratio=usage, requests_waiting=queue)), step * 2.0
        )
    return recent


def _text(payload: dict[str, Any], width: int, **kwargs: Any) -> str:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(render(payload, "http://127.0.0.1:9400", width=width, **kwargs))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_narrow_terminals_get_a_layout_that_fits(width: int) -> None:
    """No truncated cell, the full model name, and both windows."""
    rising = _walk([0.80, 0.85, 0.91], [1, 2, 3])
    text = _text(_payload(_target()), width, recent=rising)
    assert "…" not in text
    assert MODEL in text
    assert all(len(line) <= width for line in text.splitlines())
    assert "1m" in text
    assert "5m" in text
    assert "42ms / 1.50s" in text
    assert "50ms / 2.25s" in text, "the 5m window is shown, not only 1m"
    assert "full in 90s" in text
    assert "+0.25/s" in text


def test_wide_terminals_keep_the_one_row_table_untruncated() -> None:
    """At the wide layout's width every column fits."""
    text = _text(_payload(_target()), WIDE_COLUMNS, recent=_walk([0.8, 0.85, 0.91], [1, 2, 3]))
    assert "…" not in text
    assert MODEL in text
    assert "KV full in" in text
    assert "50ms / 2.25s" in text, "the wide table has the 5m window too"


@pytest.mark.parametrize("width", [80, WIDE_COLUMNS])
def test_no_forecast_while_usage_and_queue_fall(width: int) -> None:
    """Recovery: the 5-minute trend still points up, the recent readings do not: blank."""
    falling = _walk([0.30, 0.10, 0.035], [5, 2, 0])
    payload = _payload(
        _target(kv_cache_usage_ratio=0.035, kv_cache_seconds_to_full=39.0, requests_waiting=0.0)
    )
    text = _text(payload, width, recent=falling)
    assert "39s" not in text
    assert "+0.25/s" not in text
    assert "3.5%" in text


def test_no_queue_trend_with_nobody_waiting_even_if_the_slope_is_positive() -> None:
    """'queue +0.26/s' with 0 waiting is noise from the window, not a queue."""
    recent = _walk([0.1, 0.2, 0.3], [0, 0, 0])
    text = _text(
        _payload(_target(requests_waiting=0.0, queue_growth_per_second=0.26)), 80, recent=recent
    )
    assert "+0.26/s" not in text


def test_a_full_cache_says_full_without_a_trend() -> None:
    """At 100% there is nothing to forecast."""
    text = _text(_payload(_target(kv_cache_usage_ratio=1.0, kv_cache_seconds_to_full=0.0)), 80)
    assert "FULL" in text


def test_alerts_line_shows_firing_and_pending_and_drops_resolved() -> None:
    """Resolved alerts leave the line; firing wins over pending for one name."""
    alerts = [
        {"labels": {"alertname": "VLLMKVCacheSaturation"}, "state": "firing"},
        {"labels": {"alertname": "VLLMKVCacheSaturation"}, "state": "pending"},
        {"labels": {"alertname": "VLLMRequestQueueGrowing"}, "state": "pending"},
        {"labels": {"alertname": "VLLMDown"}, "state": "resolved"},
    ]
    assert active_alerts(alerts) == {
        "VLLMKVCacheSaturation": "firing",
        "VLLMRequestQueueGrowing": "pending",
    }
    text = _text(_payload(_target()), 80, alerts=alerts)
    assert "VLLMKVCacheSaturation (firing)" in text
    assert "VLLMRequestQueueGrowing (pending)" in text
    assert "VLLMDown" not in text
    resolved_only = _text(_payload(_target()), 80, alerts=alerts[-1:])
    assert "alerts: none" in resolved_only


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:9400", "http://127.0.0.1:9400"),
        ("localhost:9400/", "http://localhost:9400"),
        (":9400", "http://127.0.0.1:9400"),
        ("https://sidecar.example:443", "https://sidecar.example:443"),
    ],
)
def test_sidecar_address_accepts_host_port(given: str, expected: str) -> None:
    """``top --sidecar 127.0.0.1:9400`` works without a scheme."""
    assert sidecar_url(given) == expected


def test_a_bad_sidecar_address_is_an_argument_error() -> None:
    """A port that is not a number is refused at parse time, not as 'unreachable'."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"127\.0\.0\.1:9400"):
        sidecar_url("127.0.0.1:ninety")


def test_no_forecast_right_after_the_cache_empties() -> None:
    """The demo's recovery: a 20-second ramp to 99%, then 3%: blank, not "full in 25s".

    The readings are the demo's own, one a second, as a tmux capture of it showed them.
    """
    readings = [0.065, 0.14, 0.265, 0.444, 0.593, 0.729, 0.897, 0.981, 0.99, 0.996, 0.998]
    readings += [0.986, 0.99, 0.996, 0.997, 0.994, 0.992, 0.031, 0.034, 0.035]
    for shown in range(17, len(readings)):
        recent = Recent()
        for second, usage in enumerate(readings[: shown + 1]):
            recent.observe(_payload(_target(kv_cache_usage_ratio=usage)), float(second))
        usage = readings[shown]
        payload = _payload(_target(kv_cache_usage_ratio=usage, kv_cache_seconds_to_full=25.0))
        text = _text(payload, 80, recent=recent)
        assert f"{usage * 100:.1f}%" in text
        assert "full in" not in text, text


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_state_line_never_wraps_a_forecast_apart(width: int) -> None:
    """At saturation the numbers outgrow 80 columns beside a long model name: they move to their
    own line whole, instead of "full in" at the end of one line and "<1s" on the next."""
    rising = _walk([0.90, 0.95, 0.987], [5, 9, 13])
    target = _target(
        requests_running=51.0,
        requests_waiting=13.0,
        queue_growth_per_second=0.45,
        kv_cache_usage_ratio=0.987,
        kv_cache_seconds_to_full=0.5,
    )
    lines = _text(_payload(target), width, recent=rising).splitlines()
    assert any(MODEL in line for line in lines)
    assert any("wait 13 (+0.45/s)" in line and "KV 98.7% full in <1s" in line for line in lines)

"""What ``top`` and ``demo`` draw: the signals, the alerts, and forecasts only when they hold.

Pure rendering from the ``/api/v1/signals`` and ``/api/v1/alerts`` JSON, plus :class:`Recent`,
the few readings the view itself remembers between refreshes. The sidecar's trends are least
squares over five minutes, so after a saturation they keep pointing up for minutes while usage
falls; a forecast ("KV full in", "queue +x/s") is shown only while the recent readings rise too.

Two layouts: a wide table (two rows per model or engine, 1m and 5m, >= 190 columns) and, below
that, a block per model with the 1m and 5m windows side by side, which reads at 80 columns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sidecar.signals.trend import least_squares_slope

Row = dict[str, Any]
WIDE_COLUMNS = 190
"""From this width on, the one-row-per-target table fits without truncation."""
RECENT_SECONDS = 20.0
"""How far back :class:`Recent` looks to decide whether a gauge is rising now."""
LATEST_READINGS = 5
"""The newest readings must trend up too: a sharp drop at the end of a long rise is a fall."""
KV_FULL = 0.85
"""KV usage shown in red from here (the VLLMKVCacheSaturation threshold)."""


def _key(target: Row) -> tuple[str, str | None]:
    return (str(target.get("model_name")), target.get("engine"))


class Recent:
    """The last readings of KV usage and queue depth per target, to tell rising from falling."""

    def __init__(self, seconds: float = RECENT_SECONDS) -> None:
        self._seconds = seconds
        self._points: dict[tuple[tuple[str, str | None], str], deque[tuple[float, float]]] = {}

    def observe(self, payload: dict[str, Any], now: float) -> None:
        """Remember this refresh's readings (call once per refresh, before rendering)."""
        for target in (payload.get("signals") or {}).get("targets", []):
            for name in ("kv_cache_usage_ratio", "requests_waiting"):
                value = target.get(name)
                if not isinstance(value, int | float):
                    continue
                points = self._points.setdefault((_key(target), name), deque())
                points.append((now, float(value)))
                while points and points[0][0] < now - self._seconds:
                    points.popleft()

    def rising(self, target: Row, name: str) -> bool:
        """True when the recent readings of ``name`` trend up, the newest ones included.

        At least three readings. Over the whole window alone, a KV cache that just fell from 99%
        to 3% still "rises" (the ramp before the fall outweighs one low reading).
        """
        points = list(self._points.get((_key(target), name), ()))
        return all(
            slope is not None and slope > 0
            for slope in (
                least_squares_slope(points),
                least_squares_slope(points[-LATEST_READINGS:]),
            )
        )


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s"


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _fmt_eta(seconds: float) -> str:
    if seconds <= 0:
        return "FULL"
    if seconds < 1:
        return "<1s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _latency(target: Row, signal: str, quantile: str, window: str = "1m") -> float | None:
    """``signal`` is a latency key of the signals document (``ttft_seconds`` ...)."""
    return _number((target.get(signal) or {}).get(window, {}).get(quantile))


def _windowed(target: Row, name: str, window: str = "1m") -> float | None:
    return _number((target.get(name) or {}).get(window))


def kv_forecast(target: Row, recent: Recent | None) -> str:
    """ "FULL", the time to full while usage really rises, else blank."""
    kv = _number(target.get("kv_cache_usage_ratio"))
    eta = _number(target.get("kv_cache_seconds_to_full"))
    if kv is not None and kv >= 1.0:
        return "FULL"
    if eta is None or recent is None or not recent.rising(target, "kv_cache_usage_ratio"):
        return ""
    return _fmt_eta(eta)


def queue_trend(target: Row, recent: Recent | None) -> str:
    """ "+x/s" while requests wait and the queue really grows, else blank."""
    waiting = _number(target.get("requests_waiting"))
    slope = _number(target.get("queue_growth_per_second"))
    if not waiting or slope is None or slope <= 0:
        return ""
    if recent is None or not recent.rising(target, "requests_waiting"):
        return ""
    return f"+{slope:.2f}/s"


def active_alerts(alerts: Iterable[Row]) -> dict[str, str]:
    """Alert name -> "firing" or "pending"; resolved ones are gone (firing wins per name)."""
    states: dict[str, str] = {}
    for alert in alerts:
        name = (alert.get("labels") or {}).get("alertname")
        state = alert.get("state")
        if not name or state not in ("firing", "pending"):
            continue
        if states.get(name) != "firing":
            states[name] = state
    return states


def alerts_line(alerts: Iterable[Row] | None) -> Any:
    """``alerts: VLLMKVCacheSaturation (firing), ...`` in red, or ``none`` in green."""
    from rich.text import Text

    if alerts is None:
        return Text.assemble(("alerts: ", "bold"), ("not available from this source", "dim"))
    states = active_alerts(alerts)
    if not states:
        return Text.assemble(("alerts: ", "bold"), ("none", "green"))
    parts: list[tuple[str, str] | str] = [("alerts: ", "bold")]
    for index, (name, state) in enumerate(sorted(states.items(), key=lambda i: i[1] != "firing")):
        if index:
            parts.append(", ")
        parts.append((f"{name} ({state})", "red" if state == "firing" else "yellow"))
    return Text.assemble(*parts)


def _header(payload: dict[str, Any], source: str) -> Any:
    from rich.text import Text

    scrape = payload.get("scrape") or {}
    status = (
        Text("scrape ok", style="green")
        if scrape.get("ready")
        else Text(f"scrape failing: {scrape.get('last_error') or 'no scrape yet'}", style="red")
    )
    return Text.assemble(
        ("vllm-sidecar top ", "bold"),
        (f"{source}  ", "dim"),
        status,
        ("  vLLM " + str(scrape.get("vllm_version") or "?"), "dim"),
    )


def _shown_targets(targets: list[Row]) -> list[Row]:
    """Models, plus their engines when there are several (one engine would repeat its model)."""
    engines: dict[str, int] = {}
    for target in targets:
        if target.get("engine") is not None:
            engines[target["model_name"]] = engines.get(target["model_name"], 0) + 1
    return [t for t in targets if t.get("engine") is None or engines[t["model_name"]] > 1]


def _pair(target: Row, signal: str, window: str) -> str:
    return (
        f"{_fmt_seconds(_latency(target, signal, '0.5', window))} / "
        f"{_fmt_seconds(_latency(target, signal, '0.99', window))}"
    )


def _kv_text(target: Row) -> Any:
    from rich.text import Text

    kv = _number(target.get("kv_cache_usage_ratio"))
    style = "red" if kv is not None and kv >= KV_FULL else ""
    return Text(_fmt(None if kv is None else kv * 100, ".1f", "%"), style=style)


def _wide(targets: list[Row], recent: Recent | None) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=True)
    for column in (
        "model / engine",
        "TTFT p50/p99",
        "ITL p50/p99",
        "E2E p50/p99",
        "run",
        "wait",
        "queue trend",
        "KV use",
        "KV full in",
        "preempt/s",
        "err %",
        "in/out tok/s",
        "prefix hit",
    ):
        table.add_column(column, justify="left" if column.startswith("model") else "right")
    for target in targets:
        name = target["model_name"] + (f" #{target['engine']}" if target.get("engine") else "")
        for window in ("1m", "5m"):  # the second row holds the 5m window of the windowed columns
            now = window == "1m"
            error_ratio = _windowed(target, "error_ratio", window)
            table.add_row(
                f"{name} (1m)" if now else Text("  5m", style="dim"),
                _pair(target, "ttft_seconds", window),
                _pair(target, "inter_token_latency_seconds", window),
                _pair(target, "e2e_latency_seconds", window),
                _fmt(target.get("requests_running"), ".0f") if now else "",
                _fmt(target.get("requests_waiting"), ".0f") if now else "",
                queue_trend(target, recent) if now else "",
                _kv_text(target) if now else "",
                kv_forecast(target, recent) if now else "",
                _fmt(_windowed(target, "preemptions_per_second", window)),
                _fmt(None if error_ratio is None else error_ratio * 100, ".2f"),
                f"{_fmt(_windowed(target, 'prompt_tokens_per_second', window), '.0f')} / "
                f"{_fmt(_windowed(target, 'generation_tokens_per_second', window), '.0f')}",
                _fmt(_windowed(target, "prefix_cache_hit_ratio", window), ".0%"),
                end_section=not now,
            )
    return table


def _narrow(target: Row, recent: Recent | None, width: int) -> Any:
    """One model (or engine): state on one line, then each signal over 1m and 5m."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    name = target["model_name"] + (f" engine {target['engine']}" if target.get("engine") else "")
    queue = queue_trend(target, recent)
    eta = kv_forecast(target, recent)
    numbers = Text.assemble(
        f"  run {_fmt(target.get('requests_running'), '.0f')}",
        f"  wait {_fmt(target.get('requests_waiting'), '.0f')}",
        (f" ({queue})" if queue else "", "yellow"),
        "  KV ",
        _kv_text(target),
        (f" full in {eta}" if eta else "", "red"),
    )
    # A long model name puts the numbers on their own line rather than wrapping "full in" apart.
    joiner = "" if len(name) + numbers.cell_len <= width else "\n"
    state = Text.assemble((name, "bold"), joiner, numbers)
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("")
    table.add_column("1m", justify="right")
    table.add_column("5m", justify="right")
    rows: tuple[tuple[str, Callable[[str], str]], ...] = (
        ("TTFT p50 / p99", lambda w: _pair(target, "ttft_seconds", w)),
        ("ITL p50 / p99", lambda w: _pair(target, "inter_token_latency_seconds", w)),
        ("E2E p50 / p99", lambda w: _pair(target, "e2e_latency_seconds", w)),
        ("requests/s", lambda w: _fmt(_windowed(target, "requests_per_second", w), ".1f")),
        ("errors", lambda w: _fmt(_percent(_windowed(target, "error_ratio", w)), ".1f", "%")),
        ("preemptions/s", lambda w: _fmt(_windowed(target, "preemptions_per_second", w))),
        (
            "tokens/s in / out",
            lambda w: (
                f"{_fmt(_windowed(target, 'prompt_tokens_per_second', w), '.0f')} / "
                f"{_fmt(_windowed(target, 'generation_tokens_per_second', w), '.0f')}"
            ),
        ),
        (
            "prefix cache hit",
            lambda w: _fmt(_percent(_windowed(target, "prefix_cache_hit_ratio", w)), ".0f", "%"),
        ),
    )
    for label, cell in rows:
        table.add_row(label, cell("1m"), cell("5m"))
    return Group(state, table)


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100


def render(
    payload: dict[str, Any],
    source: str,
    *,
    alerts: list[Row] | None = None,
    recent: Recent | None = None,
    width: int = WIDE_COLUMNS,
) -> Any:
    """A rich renderable for one signals payload (and the alerts, when the source has them)."""
    from rich.console import Group
    from rich.text import Text

    scrape = payload.get("scrape") or {}
    targets = _shown_targets((payload.get("signals") or {}).get("targets", []))
    parts: list[Any] = [_header(payload, source), alerts_line(alerts)]
    if width >= WIDE_COLUMNS:
        parts.append(_wide(targets, recent))
        windows = "windows: 1m, and 5m on each second row"
    else:
        parts.extend(_narrow(target, recent, width) for target in targets)
        windows = "windows: 1m and 5m"
    missing = scrape.get("missing_metrics") or []
    if missing:
        parts.append(Text(f"vLLM metrics missing: {', '.join(missing)}", style="yellow"))
    parts.append(Text(f"{windows}; forecasts only while rising; Ctrl-C to quit", style="dim"))
    return Group(*parts)

"""The drift report: one self-contained HTML file (inline CSS and PNGs; no script, no network).

It opens with the verdict and the two windows, then the verdict table, then the pictures,
drifted signals first, and ends with how the numbers were made, so it can be mailed or attached to
a ticket and read without the tool.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.samples.drift.analyse import DriftResult
from sidecar.samples.drift.observe import WindowSummary
from sidecar.samples.drift.plots import BASELINE_COLOUR, CURRENT_COLOUR, plots_for
from sidecar.samples.drift.table import STATUS_TEXT, effect_text, p_text
from sidecar.samples.timespec import describe_instant

_ORDER = {"drift": 0, "ok": 1, "insufficient": 2}
_CSS = f"""
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2330; margin: 0; background: #f4f5f7; }}
main {{ max-width: 1000px; margin: 0 auto; padding: 24px; }}
header {{ border-radius: 10px; padding: 18px 22px; color: white; }}
header.drift {{ background: #b42318; }} header.ok {{ background: #1f7a4d; }}
header.insufficient {{ background: #a15c07; }}
header h1 {{ margin: 0 0 4px; font-size: 26px; }} header p {{ margin: 0; opacity: .9; }}
section {{ background: white; border-radius: 10px; padding: 16px 20px; margin-top: 18px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }}
h2 {{ font-size: 18px; margin: 0 0 10px; }} h3 {{ font-size: 16px; margin: 0 0 6px; }}
.windows {{ display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }}
.window {{ border-left: 6px solid; padding: 4px 12px; }}
.window.baseline {{ border-color: {BASELINE_COLOUR}; }}
.window.current {{ border-color: {CURRENT_COLOUR}; }}
.window dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }}
.window dt {{ color: #5b6475; }} .window dd {{ margin: 0; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13.5px; }}
th, td {{ text-align: left; padding: 6px 8px; border-bottom: 1px solid #e6e8ec;
  vertical-align: top; }}
th {{ color: #5b6475; font-weight: 600; }}
.badge {{ display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12.5px;
  font-weight: 600; white-space: nowrap; }}
.badge.drift {{ background: #fee4e2; color: #b42318; }}
.badge.ok {{ background: #dcfae6; color: #1f7a4d; }}
.badge.insufficient {{ background: #fef0c7; color: #a15c07; }}
.note {{ color: #5b6475; font-size: 12.5px; }}
img {{ max-width: 100%; height: auto; display: block; margin-top: 8px; }}
.numbers {{ color: #3b4252; margin: 0; }}
.method p, .method li {{ color: #3b4252; font-size: 14px; }}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _counts(counter: Counter[Any], limit: int = 4) -> str:
    if not counter:
        return "-"
    items = counter.most_common(limit)
    more = f" (+{len(counter) - limit} more)" if len(counter) > limit else ""
    return ", ".join(f"{key} ({count})" for key, count in items) + more


def _window(summary: WindowSummary, css: str) -> str:
    seen = "-"
    if summary.first is not None and summary.last is not None:
        seen = f"{describe_instant(summary.first)} .. {describe_instant(summary.last)}"
    rows = [
        ("range", summary.window.time.describe()),
        ("pins", ", ".join(f"{k}={v}" for k, v in sorted(summary.window.pins.items())) or "-"),
        ("random samples", f"{summary.records:,}"),
        ("keep-rule records left out", f"{summary.kept_excluded:,}"),
        ("first .. last", seen),
        ("models", _counts(summary.models)),
        ("deployments", _counts(summary.deployments)),
        ("vLLM versions", _counts(summary.vllm_versions)),
        ("sample rates", _counts(Counter({f"{k:g}": v for k, v in summary.sample_rates.items()}))),
    ]
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return (
        f'<div class="window {css}"><h3>{_e(summary.label)}: <code>{_e(summary.window.text)}'
        f"</code></h3><dl>{cells}</dl></div>"
    )


def _badge(status: str) -> str:
    return f'<span class="badge {status}">{_e(STATUS_TEXT[status])}</span>'


def _table(result: DriftResult) -> str:
    head = "".join(
        f"<th>{name}</th>"
        for name in ("Signal", "Baseline", "Current", "Change", "Test", "p (adj.)", "Effect", "")
    )
    rows = []
    for signal in result.signals:
        note = f'<div class="note">{_e(signal.note)}</div>' if signal.note else ""
        rows.append(
            f"<tr><td>{_e(signal.spec.title)}<div class='note'>{_e(signal.spec.population)}"
            f"</div></td><td>{_e(signal.baseline_text)}</td><td>{_e(signal.current_text)}</td>"
            f"<td>{_e(signal.change_text)}</td><td>{_e(signal.test)}</td>"
            f"<td>{_e(p_text(signal.p_adjusted))}</td><td>{_e(effect_text(signal))}</td>"
            f"<td>{_badge(signal.status)}{note}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _pictures(result: DriftResult, images: dict[str, str]) -> str:
    parts: list[str] = []
    if "proportions" in images:
        parts.append(
            "<section><h2>Shares</h2><p class='numbers'>Bars are weighted shares; whiskers are "
            "95% Wilson intervals at the effective sample size.</p>"
            f"<img alt='shares, baseline vs current' src='{images['proportions']}'></section>"
        )
    for signal in sorted(result.signals, key=lambda s: _ORDER[s.status]):
        image = images.get(signal.spec.name)
        if image is None:
            continue
        parts.append(
            f"<section><h3>{_e(signal.spec.title)} {_badge(signal.status)}</h3>"
            f"<p class='numbers'>baseline {_e(signal.baseline_text)} &rarr; current "
            f"{_e(signal.current_text)} ({_e(signal.change_text)}); {_e(signal.test)} adjusted "
            f"p {_e(p_text(signal.p_adjusted))}; {_e(effect_text(signal))}</p>"
            f"<img alt='{_e(signal.spec.title)}, baseline vs current' src='{image}'></section>"
        )
    return "".join(parts)


def _method(result: DriftResult) -> str:
    config = result.config
    return f"""<section class="method"><h2>How to read this</h2>
<ul>
<li>Only records sampled at random are compared; records kept by a keep-rule (errors, length
cut-offs, slow requests) would bias every share. Each record weighs 1 / its sample rate, so
windows whose models were sampled at different rates compare traffic, not samplers; tests use
Kish's effective sample size.</li>
<li>Distributions (lengths, latency): two-sample Kolmogorov-Smirnov test; effect = PSI over the
baseline's {config.psi_bins} quantile bins (0.1 moderate, 0.25 large). Finish-reason mix:
chi-square test; effect = PSI over reasons (Cramér's V shown). Shares: two-proportion z-test
(Fisher's exact test for small counts); effect = absolute change in percentage points.</li>
<li>All p-values are Holm-adjusted together so the chance of any false alarm on unchanged traffic
stays below alpha = {config.alpha:g}. A signal is flagged only when it is significant <em>and</em>
its effect reaches the minimum: PSI {config.min_psi:g} for mixes; PSI {config.min_psi:g} and a
move of the median or p90 by {config.min_relative_change * 100:g}% for distributions; a change
of {config.min_share_change * 100:g} percentage points for shares. Fewer than
{config.min_samples} effective samples in a window: "not enough data".</li>
<li>Refusal-style openings: {_e(", ".join(repr(p) for p in config.refusal_openings))}.
JSON requested = response_format json_object/json_schema, guided_json, structured_outputs.json,
or a prompt that says "JSON"; valid = the answer parses as a JSON object or array.</li>
</ul></section>"""


def render_html(result: DriftResult, source: str, generated_at: float | None = None) -> str:
    """The whole report as one HTML string."""
    images = plots_for(result.signals)
    status = {"drift": "drift", "no drift": "ok", "not enough data": "insufficient"}[result.verdict]
    judged = len(result.judged)
    headline = {
        "drift": f"Drift in {len(result.drifted)} of {judged} signals",
        "ok": f"No drift in {judged} signals",
        "insufficient": "Not enough data to judge",
    }[status]
    flagged = ", ".join(signal.spec.title for signal in result.drifted)
    stamp = describe_instant(time.time() if generated_at is None else generated_at)
    subtitle = f"{flagged} - " if flagged else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(headline)} - vllm-sidecar drift report</title>
<style>{_CSS}</style></head>
<body><main>
<header class="{status}"><h1>{_e(headline)}</h1>
<p>{_e(subtitle)}source {_e(source)} - generated {_e(stamp)} by vllm-sidecar {_e(__version__)}</p>
</header>
<section><h2>Windows</h2><div class="windows">{_window(result.baseline, "baseline")}
{_window(result.current, "current")}</div></section>
<section><h2>Verdict</h2>{_table(result)}</section>
{_pictures(result, images)}
{_method(result)}
</main></body></html>
"""


def write_report(result: DriftResult, path: Path, source: str) -> None:
    """Write the report atomically."""
    text = render_html(result, source)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)

"""The compare report: one self-contained HTML file, in drift's style (inline CSS and PNGs).

Verdict first, then the paired table, the pictures (baseline vs candidate length per prompt, and
the distribution of per-pair ratios), the worst pairs side by side, and how to read it.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from sidecar import __version__
from sidecar.samples.compare.analyse import CompareResult
from sidecar.samples.compare.table import STATUS_TEXT, effect_text
from sidecar.samples.compare.worst import worst_pairs
from sidecar.samples.drift.plots import BASELINE_COLOUR, CURRENT_COLOUR, _data_uri, _figure
from sidecar.samples.drift.report import _CSS
from sidecar.samples.drift.table import p_text
from sidecar.samples.timespec import describe_instant

SHOWN_CHARS = 700
_EXTRA_CSS = """
header.regression { background: #b42318; } header.improved { background: #1f7a4d; }
.badge.regression { background: #fee4e2; color: #b42318; }
.badge.improved { background: #d1e9ff; color: #175cd3; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.pair pre { white-space: pre-wrap; word-break: break-word; background: #f7f8fa; padding: 8px;
  border-radius: 6px; font-size: 12.5px; margin: 4px 0; }
.prompt { color: #3b4252; font-size: 13px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " …"


def length_plot(result: CompareResult) -> str | None:
    """Scatter of output length per prompt (baseline x, candidate y) and the ratio histogram."""
    pairs = result.pairs
    both = pairs.baseline.ok & pairs.candidate.ok
    base = np.nan_to_num(pairs.baseline.output_chars[both]) + 1
    cand = np.nan_to_num(pairs.candidate.output_chars[both]) + 1
    if base.size == 0:
        return None
    figure = _figure(9.0, 3.4)
    left, right = figure.subplots(1, 2)
    left.scatter(base, cand, s=10, alpha=0.5, color=CURRENT_COLOUR)
    low, high = float(min(base.min(), cand.min())), float(max(base.max(), cand.max()))
    left.plot([low, high], [low, high], color=BASELINE_COLOUR, linestyle=":", label="same length")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("baseline answer (chars + 1)")
    left.set_ylabel("candidate answer (chars + 1)")
    left.legend(frameon=False, fontsize=8)
    left.set_title("each prompt", fontsize=10)
    ratios = np.log2(cand / base)
    right.hist(ratios, bins=40, color=CURRENT_COLOUR, alpha=0.7)
    right.axvline(0.0, color=BASELINE_COLOUR, linestyle=":")
    right.set_xlabel("log2(candidate / baseline length)")
    right.set_ylabel("pairs")
    right.set_title("per-pair length ratio", fontsize=10)
    return _data_uri(figure)


def _table(result: CompareResult) -> str:
    head = "".join(
        f"<th>{name}</th>"
        for name in ("Signal", "Baseline", "Candidate", "Change", "Test", "p (adj.)", "Effect", "")
    )
    rows = []
    for signal in result.signals:
        note = f'<div class="note">{_e(signal.note)}</div>' if signal.note else ""
        rows.append(
            f"<tr><td>{_e(signal.spec.title)}<div class='note'>{_e(signal.spec.population)}, "
            f"n={signal.n}</div></td><td>{_e(signal.baseline_text)}</td>"
            f"<td>{_e(signal.candidate_text)}</td><td>{_e(signal.change_text)}</td>"
            f"<td>{_e(signal.test)}</td><td>{_e(p_text(signal.p_adjusted))}</td>"
            f"<td>{_e(effect_text(signal))}</td><td><span class='badge {signal.status}'>"
            f"{_e(STATUS_TEXT[signal.status])}</span>{note}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _worst(result: CompareResult) -> str:
    chosen = worst_pairs(result.pairs)
    if not chosen:
        return "<section><h2>Worst pairs</h2><p>No pair changed.</p></section>"
    parts = ["<section><h2>Worst pairs</h2>"]
    for pair in chosen:
        problems = ", ".join(pair.problems) or "length changed"
        parts.append(
            f"<h3><code>{_e(pair.request_id)}</code>: {_e(problems)} "
            f"(length x{pair.length_ratio:.2f})</h3>"
            f"<div class='prompt'>{_e(_short(pair.prompt))}</div><div class='pair'>"
            f"<div><b>baseline</b><pre>{_e(_short(pair.baseline))}</pre></div>"
            f"<div><b>candidate</b><pre>{_e(_short(pair.candidate))}</pre></div></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _method(result: CompareResult) -> str:
    config = result.config
    return f"""<section class="method"><h2>How to read this</h2><ul>
<li>Each prompt sampled in production was replayed to the candidate; the pairs are the original
answer (baseline) and the candidate's answer to the same request. Replayed prompts are the
<em>redacted</em> ones the sampler stored.</li>
<li>Lengths and latency: Wilcoxon signed-rank test on the per-pair log ratio; effect = typical
ratio (exp of the median log ratio) - 1, floor {config.min_relative_change * 100:g}%. Flips
(finish reason, length cut-off, empty, refusal, invalid JSON, errors): exact McNemar test on the
pairs that changed; effect = (worse - better flips) / pairs, floor
{config.min_share_change * 100:g} percentage points.</li>
<li>All p-values are Holm-adjusted together (family-wise alpha {config.alpha:g}). A regression is
significant, above the floor and in the bad direction (for length: either direction). Latency of
the baseline is what the production proxy measured; replay against the current deployment too
for a like-for-like latency baseline.</li>
</ul></section>"""


def render_html(result: CompareResult, generated_at: float | None = None) -> str:
    """The whole report as one HTML string."""
    status = {"regression": "regression", "no regression": "ok", "not enough data": "insufficient"}
    css = status[result.verdict]
    flagged = ", ".join(signal.spec.title for signal in result.regressions)
    headline = {
        "regression": f"Regression in {len(result.regressions)} signals",
        "ok": "No regression",
        "insufficient": "Not enough pairs to judge",
    }[css]
    image = length_plot(result)
    picture = (
        f"<section><h2>Output length, pair by pair</h2><img alt='length per pair' src='{image}'>"
        "</section>"
        if image
        else ""
    )
    stamp = describe_instant(time.time() if generated_at is None else generated_at)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(headline)} - vllm-sidecar compare report</title>
<style>{_CSS}{_EXTRA_CSS}</style></head>
<body><main>
<header class="{css}"><h1>{_e(headline)}</h1>
<p>{_e(flagged + " - " if flagged else "")}replay {_e(result.run_id)}, {result.pairs.size} pairs
- generated {_e(stamp)} by vllm-sidecar {_e(__version__)}</p></header>
<section><h2>Verdict</h2>{_table(result)}</section>
{picture}
{_worst(result)}
{_method(result)}
</main></body></html>
"""


def write_report(result: CompareResult, path: Path) -> None:
    """Write the report atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(render_html(result), encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)

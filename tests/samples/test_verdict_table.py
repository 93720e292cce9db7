"""drift and compare print their verdicts through one table layout."""

from __future__ import annotations

from rich.console import Console

from sidecar.samples.drift.table import VerdictRow, signal_table


def _render(table: object) -> str:
    console = Console(record=True, width=160)
    console.print(table)
    return console.export_text()


def test_signal_table_shows_each_row_with_its_verdict_and_note() -> None:
    rows = [
        VerdictRow(
            "Output length",
            "812",
            "640",
            "-21%",
            "wilcoxon 0.002",
            "-21% (min ±10%)",
            "REGRESSION",
            "bold red",
            "shorter answers",
        ),
        VerdictRow("Errors", "0.1%", "0.1%", "+0.0 pp", "-", "-", "ok", "green", None),
    ]
    text = _render(signal_table("Replay r1: 2 pairs - REGRESSION", "caption", "Candidate", rows))
    assert "Replay r1: 2 pairs - REGRESSION" in text
    assert "Candidate" in text
    assert "Current" not in text
    lines = text.splitlines()
    length_line = next(line for line in lines if "Output length" in line)
    for cell in ("812", "640", "REGRESSION"):
        assert cell in length_line
    assert any("shorter answers" in line for line in lines)
    errors_line = next(line for line in lines if "Errors" in line)
    cells = [cell.strip() for cell in errors_line.strip("│ ").split("│")]
    assert cells == ["Errors", "0.1%", "0.1%", "+0.0 pp", "-", "-", "ok"]

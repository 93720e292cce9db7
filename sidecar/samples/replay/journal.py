"""The replay journal: what was sent and what came back, so an interrupted run can resume.

Two append-only files in the run directory, written with one ``write`` per line on an
``O_APPEND`` descriptor (a ``kill -9`` can at worst leave a torn last line, which is ignored):

- ``.sent.jsonl``: the request id, written *before* the request goes out;
- ``.answers.jsonl``: the candidate's whole record, written when the answer is complete.

On resume, an id with an answer is done. An id that was sent but has no answer was in flight
when the run stopped: the candidate may or may not have processed it. Replay is **at most
once** by default: such requests are not sent again (they are counted as "interrupted" and left
out of ``compare``), so the candidate never sees a request twice; ``--retry-interrupted`` makes
the resume at least once instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SENT = ".sent.jsonl"
ANSWERS = ".answers.jsonl"


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as stream:
        for line in stream:
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a line torn by a crash
            if isinstance(value, dict):
                yield value


@dataclass(slots=True)
class JournalState:
    """What an earlier run of the same replay already did."""

    answered: dict[str, dict[str, Any]] = field(default_factory=dict)
    """request id -> the candidate record."""
    interrupted: set[str] = field(default_factory=set)
    """Sent, never answered: maybe processed by the candidate, maybe not."""


class Journal:
    """Append-only notes of a replay run (see module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self._sent = os.open(run_dir / SENT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._answers = os.open(run_dir / ANSWERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @staticmethod
    def load(run_dir: Path) -> JournalState:
        state = JournalState()
        for record in _lines(run_dir / ANSWERS):
            request_id = record.get("request_id")
            if isinstance(request_id, str):
                state.answered[request_id] = record
        for note in _lines(run_dir / SENT):
            request_id = note.get("id")
            if isinstance(request_id, str) and request_id not in state.answered:
                state.interrupted.add(request_id)
        return state

    def sending(self, request_id: str) -> None:
        """Note that ``request_id`` is about to go out (before the first byte is sent)."""
        os.write(self._sent, json.dumps({"id": request_id}).encode() + b"\n")

    def answered(self, record: dict[str, Any]) -> None:
        """Keep the candidate's record (after the last byte came back)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        os.write(self._answers, line)

    def close(self) -> None:
        os.close(self._sent)
        os.close(self._answers)

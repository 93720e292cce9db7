"""SSE events are not tokens: a writer that fell behind sends every new token in one event.

Real vLLM merges tokens into one event when its HTTP handler falls behind the engine (242-251
events for 256 tokens were seen on a starved API server); the emulator's writer does the same
with whatever the engine produced since its last write.
"""

from __future__ import annotations

import json
import time

from sidecar.emulator import EmulatorOptions
from sidecar.emulator.generate import _plan_choices, _Writer
from sidecar.emulator.protocol import parse_generation
from sidecar.emulator.server import EmulatorState


def _writer(max_tokens: int) -> _Writer:
    state = EmulatorState.create(EmulatorOptions.for_tests(model="m"))
    body = {"model": "m", "prompt": "merge", "max_tokens": max_tokens, "ignore_eos": True}
    params = parse_generation("completion", {**body, "stream": True}, "m")
    choices = _plan_choices(state, params, "merge-id", time.monotonic())
    return _Writer(state, params, "cmpl-merge-id", choices)


def _texts(events: list[str]) -> list[str]:
    return [json.loads(event[len("data: ") :])["choices"][0]["text"] for event in events]


def test_tokens_produced_since_the_last_write_go_out_as_one_event() -> None:
    writer = _writer(8)
    (choice,) = writer.choices
    choice.sequence.output = 5  # the engine ran five steps while the writer was busy
    events, error = writer._drain(choice)
    assert error is None
    assert _texts(events) == ["".join(choice.plan.deltas[:5])]
    choice.sequence.output = 6  # one more step: one token, one event
    events, _ = writer._drain(choice)
    assert _texts(events) == [choice.plan.deltas[5]]
    assert choice.sent == 6

"""``/v1/chat/completions`` and ``/v1/completions``: plan, queue, then stream or answer whole.

Streaming follows vLLM byte for byte in shape: headers at once, then (when the first token
exists) a role chunk per choice for chat, one ``data: <json>\\n\\n`` event per token, the last
token's event carrying ``finish_reason``, an optional usage chunk with ``"choices": []``, and
``data: [DONE]\\n\\n``. If the client goes away, the handler is cancelled (or its write fails)
and the engine aborts the sequences at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.emulator import keys, protocol, text
from sidecar.emulator.engine import AdmissionRejected
from sidecar.emulator.protocol import ApiError, GenerationParams, Kind
from sidecar.emulator.request import EngineRequest

if TYPE_CHECKING:
    from sidecar.emulator.server import EmulatorState

SSE_DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Choice:
    """One output sequence of the HTTP request and what has been sent of it."""

    index: int
    plan: text.OutputPlan
    sequence: EngineRequest
    sent: int = 0
    closed: bool = False


def _plan_choices(
    state: EmulatorState, params: GenerationParams, base_id: str, arrival: float
) -> list[Choice]:
    options = state.options
    faults = state.controls.faults
    dice = state.controls.dice
    behaviour = state.controls.behaviour
    progress = asyncio.Event()
    choices: list[Choice] = []
    for prompt in params.prompts:
        room = options.max_model_len - len(prompt.ids)
        limit = min(params.max_tokens, room) if params.max_tokens else room
        hashes = text.block_hashes(prompt.ids, options.block_size)
        for sample in range(params.n):
            plan = text.plan_output(
                prompt.key if sample == 0 else f"{prompt.key}\x00{sample}",
                seed=options.seed,
                behaviour=behaviour,
                limit=limit,
                stop=params.stop,
                include_stop=params.include_stop,
                ignore_eos=params.ignore_eos,
                min_tokens=params.min_tokens,
            )
            planned = len(plan.deltas)
            fail_after = dice.randrange(planned) if dice.random() < faults.error_rate else None
            stall_after = 1 if dice.random() < faults.stall_share else None
            index = len(choices)
            sequence = EngineRequest(
                request_id=f"{base_id}-{index}",
                external_id=base_id,
                prompt_len=len(prompt.ids),
                block_hashes=hashes,
                planned_tokens=planned,
                planned_reason=plan.finish_reason,
                arrival=arrival,
                max_tokens_param=params.max_tokens,
                n_param=params.n,
                fail_after=fail_after,
                stall_after=stall_after,
                progress=progress,
            )
            choices.append(Choice(index, plan, sequence))
    return choices


async def handle(request: web.Request, kind: Kind) -> web.StreamResponse:
    """Serve one generation request end to end."""
    state = request.app[keys.STATE]
    params = protocol.parse_generation(
        kind, protocol.parse_json(await request.read()), state.options.model
    )
    protocol.check_context(params, state.options.max_model_len)
    base_id = request.headers.get("X-Request-Id") or params.request_id or uuid.uuid4().hex
    response_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + base_id
    choices = _plan_choices(state, params, base_id, request[keys.ARRIVAL])
    sequences = [choice.sequence for choice in choices]
    try:
        state.engine.check_admission(len(sequences), sum(len(p.ids) for p in params.prompts))
    except AdmissionRejected as exc:
        err_type = (
            "QueueOverflowError" if exc.reason == "max_num_queued_reqs" else "MaxQueuedTokensError"
        )
        raise ApiError(503, err_type, str(exc)) from None
    latency = state.controls.faults.latency_ms
    if latency:
        await asyncio.sleep(latency / 1000.0)
    state.engine.submit(sequences)
    writer = _Writer(state, params, response_id, choices)
    try:
        if params.stream:
            return await writer.stream(request)
        return await writer.whole()
    finally:
        state.engine.abort(sequences, base_id)


class _Writer:
    """Turns engine progress into a response for one request."""

    def __init__(
        self,
        state: EmulatorState,
        params: GenerationParams,
        response_id: str,
        choices: list[Choice],
    ) -> None:
        self.state = state
        self.params = params
        self.choices = choices
        self.chat = params.kind == "chat"
        self.created = int(time.time())
        self.progress = choices[0].sequence.progress
        self.prompt_tokens = sum(len(prompt.ids) for prompt in params.prompts)
        self.prompt_len = {choice.index: choice.sequence.prompt_len for choice in choices}
        model = protocol.dumps(params.model)
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        self.head = (
            f'data: {{"id":{protocol.dumps(response_id)},"object":"{kind}",'
            f'"created":{self.created},"model":{model},'
        )
        self.response_id = response_id
        self.fingerprint = state.fingerprint

    # --- whole responses ----------------------------------------------------------------------
    async def whole(self) -> web.Response:
        while True:
            self.progress.clear()
            if all(choice.sequence.finished for choice in self.choices):
                break
            await self.progress.wait()
        if any(choice.sequence.finish_reason == "error" for choice in self.choices):
            raise ApiError(500, "InternalServerError", "Internal server error")
        out_choices: list[dict[str, Any]] = []
        for choice in self.choices:
            sequence = choice.sequence
            content = "".join(choice.plan.deltas[: sequence.output])
            finish = sequence.finish_reason
            stop_reason = choice.plan.stop_reason if finish == choice.plan.finish_reason else None
            if self.chat:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": content,
                    "reasoning_content": None,
                }
                item: dict[str, Any] = {"index": choice.index, "message": message}
            else:
                prompt_text = self.params.prompts[choice.index // self.params.n].text
                item = {
                    "index": choice.index,
                    "text": (prompt_text if self.params.echo else "") + content,
                }
            item.update(logprobs=None, finish_reason=finish, stop_reason=stop_reason)
            if not self.chat:
                item["prompt_logprobs"] = None
            out_choices.append(item)
        completion_tokens = sum(choice.sequence.output for choice in self.choices)
        body = {
            "id": self.response_id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.params.model,
            "choices": out_choices,
            "service_tier": None,
            "system_fingerprint": self.fingerprint,
            "usage": protocol.usage(self.prompt_tokens, completion_tokens),
            "prompt_logprobs": None,
        }
        return web.Response(body=protocol.dumps(body).encode(), content_type="application/json")

    # --- streams ------------------------------------------------------------------------------
    def _event(self, index: int, delta: str, finish: str | None, stop: str | None) -> str:
        if self.chat:
            inner = f'"delta":{{"content":{protocol.dumps(delta)}}}'
        else:
            inner = f'"text":{protocol.dumps(delta)}'
        tail = f',"finish_reason":{protocol.dumps(finish)}'
        if finish is not None or not self.chat:
            tail += f',"stop_reason":{protocol.dumps(stop)}'
        usage = ""
        if finish is not None and not self.params.include_usage and self.fingerprint:
            usage = f',"system_fingerprint":{protocol.dumps(self.fingerprint)}'
        if self.params.continuous_usage and self.params.include_usage:
            done = self.choices[index].sent
            usage = ',"usage":' + protocol.dumps(
                {
                    "prompt_tokens": self.prompt_len[index],
                    "total_tokens": self.prompt_len[index] + done,
                    "completion_tokens": done,
                }
            )
        return (
            f'{self.head}"choices":[{{"index":{index},{inner},"logprobs":null{tail}}}]{usage}}}\n\n'
        )

    def _role_events(self) -> str:
        events = []
        for choice in self.choices:
            usage = ""
            if self.params.continuous_usage and self.params.include_usage:
                prompt = self.prompt_len[choice.index]
                counts = {"prompt_tokens": prompt, "total_tokens": prompt, "completion_tokens": 0}
                usage = ',"usage":' + protocol.dumps(counts)
            events.append(
                f'{self.head}"choices":[{{"index":{choice.index},"delta":{{"role":"assistant",'
                f'"content":""}},"logprobs":null,"finish_reason":null}}]{usage}}}\n\n'
            )
        return "".join(events)

    def _echo_events(self) -> str:
        return "".join(
            self._event(
                choice.index, self.params.prompts[choice.index // self.params.n].text, None, None
            )
            for choice in self.choices
        )

    def _drain(self, choice: Choice) -> tuple[list[str], str | None]:
        """Events for tokens produced since the last write, and an in-band error if failed."""
        sequence = choice.sequence
        events: list[str] = []
        finish = sequence.finish_reason if sequence.finished else None
        if finish == "error":
            choice.closed = True
            return events, "error"
        produced = sequence.output
        if choice.sent < produced:
            # Like vLLM, one event carries every token produced since the last write: when the
            # writer falls behind the engine, tokens merge (SSE events are not tokens).
            delta = "".join(choice.plan.deltas[choice.sent : produced])
            choice.sent = produced
            if finish is not None:
                stop = choice.plan.stop_reason if finish == choice.plan.finish_reason else None
                events.append(self._event(choice.index, delta, finish, stop))
                choice.closed = True
            elif delta:
                events.append(self._event(choice.index, delta, None, None))
        if finish is not None and not choice.closed:
            events.append(self._event(choice.index, "", finish, None))
            choice.closed = True
        return events, None

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )
        request[keys.STREAMING] = True
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # client left; handle() aborts
            await self._stream_events(response)
        return response

    async def _stream_events(self, response: web.StreamResponse) -> None:
        started = False
        while True:
            self.progress.clear()
            if not started and any(c.sequence.output or c.sequence.finished for c in self.choices):
                started = True
                opening = self._role_events() if self.chat else ""
                if self.params.echo:
                    opening += self._echo_events()
                if opening:
                    await response.write(opening.encode())
            events: list[str] = []
            failed = False
            for choice in self.choices:
                if not choice.closed:
                    drained, error = self._drain(choice)
                    events.extend(drained)
                    failed = failed or error is not None
            if failed:
                failure = ApiError(500, "InternalServerError", "Internal server error")
                flat = self.state.facts.flat_errors
                body = {"error": failure.body(flat=True)} if flat else failure.body(flat=False)
                events.append(f"data: {protocol.dumps(body)}\n\n")
            if events:
                await response.write("".join(events).encode())
            if failed or all(choice.closed for choice in self.choices):
                break
            await self.progress.wait()
        if not failed and self.params.include_usage:
            completion = sum(choice.sequence.output for choice in self.choices)
            usage = protocol.usage(self.prompt_tokens, completion)
            del usage["prompt_tokens_details"]
            tail = (
                f',"system_fingerprint":{protocol.dumps(self.fingerprint)}'
                if self.fingerprint
                else ""
            )
            await response.write(
                f'{self.head}"choices":[],"usage":{protocol.dumps(usage)}{tail}}}\n\n'.encode()
            )
        await response.write(SSE_DONE)
        await response.write_eof()

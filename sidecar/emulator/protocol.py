"""OpenAI request bodies in, vLLM-shaped JSON out.

Parsing is strict where vLLM is (bad JSON, wrong types, unknown model, context overflow give the
same status, error ``type`` and message shape) and lenient where vLLM ignores things (sampling
knobs such as ``temperature`` are accepted and have no effect on the deterministic answer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.emulator import text

Kind = Literal["chat", "completion"]
MAX_N = 128
GREEDY_BELOW = 1e-5
"""vLLM's ``_SAMPLING_EPS``: a temperature below it means greedy sampling."""


class ApiError(Exception):
    """An error response: HTTP status, vLLM error ``type``, message and offending ``param``."""

    def __init__(self, status: int, err_type: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.err_type = err_type
        self.message = message
        self.param = param

    def body(self, *, flat: bool) -> dict[str, Any]:
        """The JSON body: ``{"error": {...}}`` (vLLM >= 0.10.1) or the older flat shape."""
        info = {"message": self.message, "type": self.err_type, "param": self.param}
        if flat:
            return {"object": "error", **info, "code": self.status}
        return {"error": {**info, "code": self.status}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "BadRequestError", message, param)


def validation_error(loc: str, err_type: str, msg: str, given: str, ctx: str = "") -> ApiError:
    """FastAPI's request-validation error as vLLM reports it: type ``Bad Request``, the pydantic
    location as ``param`` (seen on a real 0.32.0 server for bad JSON and missing fields)."""
    detail = f"{{'type': '{err_type}', 'loc': '{loc}', 'msg': '{msg}', 'input': '{given}'{ctx}}}"
    return ApiError(400, "Bad Request", f"1 validation error:\n  {detail}", loc)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt after templating: its determinism key, text (for echo) and token ids."""

    key: str
    text: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Everything the handler needs from a chat or completion request body."""

    kind: Kind
    model: str
    prompts: tuple[Prompt, ...]
    n: int
    max_tokens: int | None
    stop: tuple[str, ...]
    include_stop: bool
    ignore_eos: bool
    min_tokens: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    echo: bool
    request_id: str | None


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise validation_error("body", "missing", "Field required", "None")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        context = f", 'ctx': {{'error': '{exc.msg}'}}"
        raise validation_error(
            f"body.{exc.pos}", "json_invalid", "JSON decode error", "<dict of 0 items>", context
        ) from None
    except UnicodeDecodeError as exc:
        raise bad_request(f"Invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _int_field(body: Mapping[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer, got {value!r}.", name)
    if value < minimum:
        raise bad_request(f"{name} must be at least {minimum}, got {value}.", name)
    return value


def _bool_field(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean, got {value!r}.", name)
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise bad_request("stop must be a string or a list of strings.", "stop")


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request("Each content part must be an object with a type.", "messages")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise bad_request("A text content part needs a string text.", "messages")
                parts.append(part["text"])
        return "\n".join(parts)
    raise bad_request("Message content must be a string, a list of parts, or null.", "messages")


def _chat_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = body.get("messages")
    if messages is None:
        given = f"<dict of {len(body)} items>"
        raise validation_error("body.messages", "missing", "Field required", given)
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list.", "messages")
    pairs: list[tuple[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request("Each message must be an object with a string role.", "messages")
        pairs.append((message["role"], _message_text(message.get("content"))))
    rendered = text.render_chat(pairs)
    return Prompt(rendered, rendered, tuple(text.token_ids(rendered)))


def _completion_prompts(body: Mapping[str, Any]) -> tuple[Prompt, ...]:
    value = body.get("prompt")
    if isinstance(value, str):
        return (Prompt(value, value, tuple(text.token_ids(value))),)
    if isinstance(value, list) and value:
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return (_id_prompt(value),)
        if all(isinstance(item, str) for item in value):
            return tuple(Prompt(item, item, tuple(text.token_ids(item))) for item in value)
        if all(isinstance(item, list) and item for item in value):
            return tuple(_id_prompt(item) for item in value)
    raise bad_request(
        "prompt must be a string, a list of strings, or (lists of) token ids.", "prompt"
    )


def _id_prompt(ids: list[Any]) -> Prompt:
    if not all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in ids):
        raise bad_request("Token ids must be non-negative integers.", "prompt")
    key = "ids:" + ",".join(str(item) for item in ids)
    return Prompt(key, "".join(f" <{item}>" for item in ids), tuple(ids))


def parse_generation(kind: Kind, body: Mapping[str, Any], served_model: str) -> GenerationParams:
    """Validate a chat/completions body; raise :class:`ApiError` like vLLM would."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model must be a string.", "model")
    if model is not None and model != served_model:
        raise ApiError(404, "NotFoundError", f"The model `{model}` does not exist.", "model")
    prompts = (_chat_prompt(body),) if kind == "chat" else _completion_prompts(body)
    max_tokens = _int_field(body, "max_tokens", minimum=1)
    if kind == "chat":
        max_tokens = _int_field(body, "max_completion_tokens", minimum=1) or max_tokens
    n = _int_field(body, "n", minimum=1) or 1
    if n > MAX_N:
        raise bad_request(f"n must be at most {MAX_N}, got {n}.", "n")
    temperature = body.get("temperature")
    greedy = isinstance(temperature, int | float) and temperature < GREEDY_BELOW
    if greedy and n > 1:  # vLLM's SamplingParams._verify_greedy_sampling
        raise bad_request(f"n must be 1 when using greedy sampling, got {n}.")
    stream = _bool_field(body, "stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object.", "stream_options")
    options = options or {}
    request_id = body.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("request_id must be a string.", "request_id")
    return GenerationParams(
        kind=kind,
        model=served_model,
        prompts=prompts,
        n=n,
        max_tokens=max_tokens,
        stop=_stop(body),
        include_stop=_bool_field(body, "include_stop_str_in_output"),
        ignore_eos=_bool_field(body, "ignore_eos"),
        min_tokens=_int_field(body, "min_tokens", minimum=0) or 0,
        stream=stream,
        include_usage=_bool_field(options, "include_usage"),
        continuous_usage=_bool_field(options, "continuous_usage_stats"),
        echo=kind == "completion" and _bool_field(body, "echo"),
        request_id=request_id,
    )


def check_context(params: GenerationParams, max_model_len: int) -> None:
    """vLLM's context-length validation (400 before anything is queued)."""
    if params.max_tokens is not None and params.max_tokens > max_model_len:
        raise bad_request(
            f"max_tokens={params.max_tokens} cannot be greater than max_model_len="
            f"{max_model_len}. Please request fewer output tokens. "
            f"(parameter=max_tokens, value={params.max_tokens})",
            "max_tokens",
        )
    for prompt in params.prompts:
        length = len(prompt.ids)
        if length > max_model_len:
            raise bad_request(
                f"This model's maximum context length is {max_model_len} tokens. However, your "
                f"prompt contains {length} input tokens, which exceeds this limit even without "
                "any output tokens. Please reduce the length of the input prompt. "
                f"(parameter=input_tokens, value={length})",
                "input_tokens",
            )
        wanted = length + (params.max_tokens or 0)
        if length >= max_model_len or wanted > max_model_len:
            raise bad_request(
                f"This model's maximum context length is {max_model_len} tokens. However, you "
                f"requested {wanted} tokens ({length} in the messages, "
                f"{params.max_tokens or 0} in the completion). Please reduce the length of the "
                "messages or completion.",
                "max_tokens" if length < max_model_len else "messages",
            )


def dumps(value: Any) -> str:
    """Compact JSON, as pydantic's ``model_dump_json`` prints it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }

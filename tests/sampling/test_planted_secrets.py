"""A corpus of planted secrets: every class, in every place a value can reach a record.

Each case builds the record the way the pipeline does (:func:`build_record` and the one encoder,
on an exchange like the proxy's) and asserts that the secret is nowhere in it and that the
expected kind of redaction took its place. Out of scope (documented in docs/samples.md):
base64-encoded secrets and secrets split by zero-width characters.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from sidecar.sampling.exchange import Exchange
from sidecar.sampling.record import RecordContext, build_record
from sidecar.sampling.redact import Redactor
from sidecar.sampling.schema import encode
from tests.sampling.helpers import chat_json, error_json, exchange, sse_event

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJ" + "c3ViIjoiMTIzNDU2Nzg5MCIsIm5hbWUiOiJKb2huIERvZSJ9" * 40 + "."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
"""A 2 KB JWT: longer than the 1,024-character overlap of the old scanning windows."""
PGP_BODY = "lQOYBF0Hx2sBCADc3J9yZ5Xq0bUf8v4aWm7sP1kQ9nR2tL6eY8oI3uA5hG7jK0lM"
PGP = (
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
    + (PGP_BODY + "\n") * 4
    + "=a1b2\n-----END PGP PRIVATE KEY BLOCK-----"
)


@dataclass(frozen=True)
class Secret:
    """A planted value, the text that must not survive, and the redaction expected instead."""

    value: str
    kind: str
    needle: str = ""

    @property
    def leak(self) -> str:
        return self.needle or self.value


SECRETS: dict[str, Secret] = {
    "jwt_2kb": Secret(JWT, "jwt", JWT[-60:]),
    "pgp_private_key": Secret(PGP, "private_key", PGP_BODY),
    "rsa_private_key": Secret(
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9\n-----END RSA PRIVATE KEY-----",
        "private_key",
        "MIIEowIBAAKCAQEA7bq9",
    ),
    "slack_app_token": Secret(
        "xapp-1-A0123456789-1234567890123-0123456789abcdef0123456789abcdef", "api_key"
    ),
    "slack_bot_token": Secret("xoxb-1234567890-abcdefghij", "api_key"),
    "slack_webhook": Secret(
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "webhook",
        "T00000000/B00000000/XXXX",
    ),
    "aws_access_key_id": Secret("AKIAIOSFODNN7EXAMPLE", "aws_key"),
    "aws_secret_access_key": Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret"),
    "openai_key": Secret("sk-proj-abcdefghijklmnopqrstuvwxyz123456", "api_key"),
    "card_dots": Secret("4111.1111.1111.1111", "card"),
    "card_spaces": Secret("4111 1111 1111 1111", "card"),
    "iban_lowercase_spaced": Secret("de89 3704 0044 0532 0130 00", "iban"),
    "iban_lowercase_compact": Secret("gb82west12345698765432", "iban"),
    "phone_french": Secret("06 12 34 56 78", "phone"),
    "phone_bare_ten_digits": Secret("4155550123", "phone"),
    "phone_international": Secret("+44 20 7946 0958", "phone"),
    "email": Secret("john.doe+tag@example.co.uk", "email"),
    "email_url_encoded": Secret("alice%40example.com", "email"),
    "email_full_width_at": Secret("alice\uff20example.com", "email"),
    "ipv4": Secret("192.168.1.20", "ipv4"),
    "bearer": Secret("Bearer abcDEF123456ghiJKL", "bearer", "abcDEF123456ghiJKL"),
}


def _request(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
    }
    body.update(fields)
    return json.dumps(body).encode()


def _stream(*deltas: dict[str, Any], index: int = 0) -> list[bytes]:
    events = [
        sse_event({"id": "c", "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        for delta in deltas
    ]
    return [*events, sse_event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _tool_call_delta(name: str, arguments: str) -> dict[str, Any]:
    call = {"index": 0, "id": "call_1", "type": "function"}
    return {"tool_calls": [{**call, "function": {"name": name, "arguments": arguments}}]}


Place = Callable[[str], Exchange]

PLACES: dict[str, Place] = {
    "prompt": lambda s: exchange(
        "r", request_body=_request(messages=[{"role": "user", "content": f"my {s} ok"}])
    ),
    "system_message": lambda s: exchange(
        "r",
        request_body=_request(
            messages=[{"role": "system", "content": s}, {"role": "user", "content": "hi"}]
        ),
    ),
    "request_tool_call_arguments": lambda s: exchange(
        "r",
        request_body=_request(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": json.dumps({"q": s})},
                        }
                    ],
                }
            ]
        ),
    ),
    "request_function_name": lambda s: exchange(
        "r",
        request_body=_request(
            tools=[{"type": "function", "function": {"name": s, "parameters": {}}}]
        ),
    ),
    "user": lambda s: exchange("r", request_body=_request(user=s)),
    "metadata": lambda s: exchange("r", request_body=_request(metadata={"note": s, s: "as a key"})),
    "non_json_request": lambda s: exchange("r", request_body=f"prompt={s}".encode()),
    "plain_response": lambda s: exchange("r", response_chunks=[chat_json(f"sure: {s}")]),
    "streamed_response": lambda s: exchange(
        "r", streamed=True, response_chunks=_stream({"content": f"x {s} y"})
    ),
    "streamed_split_across_events": lambda s: exchange(
        "r",
        streamed=True,
        response_chunks=_stream(*({"content": piece} for piece in _pieces(f" {s} "))),
    ),
    "second_choice_n2": lambda s: exchange(
        "r",
        streamed=True,
        response_chunks=[*_stream({"content": "fine"}), *_stream({"content": s}, index=1)],
    ),
    "reasoning": lambda s: exchange(
        "r", streamed=True, response_chunks=_stream(*({"reasoning_content": p} for p in _pieces(s)))
    ),
    "response_tool_call_arguments": lambda s: exchange(
        "r",
        streamed=True,
        response_chunks=_stream(_tool_call_delta("lookup", json.dumps({"q": s}))),
    ),
    "response_function_name": lambda s: exchange(
        "r", streamed=True, response_chunks=_stream(_tool_call_delta(s, "{}"))
    ),
    "error_echo": lambda s: exchange(
        "r", status=400, response_chunks=[error_json(f"bad value {s!r}")]
    ),
    "plain_text_error": lambda s: exchange(
        "r", status=502, response_chunks=[f"upstream said {s}".encode()]
    ),
    "url_path": lambda s: replace(exchange("r"), path=f"/v1/chat/completions/{s}"),
    "request_id": exchange,
    "model_name": lambda s: exchange("r", model=s),
}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [str(value)]


def _record_text(built: Exchange) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    context = RecordContext(
        reason="random", rate=1.0, deployment="d", pod="p", sidecar_version="v", vllm_version=None
    )
    record = build_record(built, context, Redactor(), counts)
    return "\n".join(_strings(json.loads(encode(record)))), counts


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_planted_secret_reaches_a_record(name: str, place: str) -> None:
    """Each class of secret, planted in each place, is replaced by its expected redaction."""
    secret = SECRETS[name]
    text, counts = _record_text(PLACES[place](secret.value))
    assert secret.leak not in text
    assert counts[secret.kind] >= 1, counts


def test_a_phone_number_sent_as_a_json_number_is_redacted() -> None:
    """``"phone": 4155550123`` as a number, in the request and in tool-call arguments."""
    request = _request(metadata={"phone": 4155550123}, user=4155550123)
    response = _stream(_tool_call_delta("call", '{"phone": 4155550123}'))
    text, counts = _record_text(
        exchange("r", request_body=request, streamed=True, response_chunks=response)
    )
    assert "4155550123" not in text
    assert counts["phone"] == 3


def _jwt_offsets(around: int) -> list[int]:
    return [around + delta for delta in range(-len(JWT) - 2, 3, 97)] + [around - 1, around]


@pytest.mark.parametrize("around", [32 * 1024, 1024 * 1024])
def test_a_jwt_at_every_offset_around_a_boundary_is_redacted(around: int) -> None:
    """A 2 KB JWT placed so that it starts before, straddles or follows 32 KiB and 1 MiB."""
    redactor = Redactor()
    filler = "lorem ipsum " * (around // 12 + 400)
    for offset in _jwt_offsets(around):
        text = filler[:offset] + " " + JWT + " " + filler[: 2 * len(JWT)]
        out = redactor.clean_text(text)
        assert JWT[-60:] not in out, offset
        assert out.count("[REDACTED:jwt]") == 1, offset


def test_a_jwt_across_the_text_cut_of_a_huge_prompt_is_redacted() -> None:
    """A prompt over the per-field limit is cut after redaction, never through a live token."""
    from sidecar.sampling.record import MAX_TEXT_CHARS

    for offset in (MAX_TEXT_CHARS - 1500, MAX_TEXT_CHARS - 10):
        prompt = "a " * (offset // 2) + JWT + " tail" * 1000
        text, _counts = _record_text(
            exchange("r", request_body=_request(messages=[{"role": "user", "content": prompt}]))
        )
        assert JWT[:40] not in text
        assert JWT[-60:] not in text

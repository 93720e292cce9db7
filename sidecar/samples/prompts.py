"""Reading a record's request and answer the way a reviewer does.

What was asked (chat messages, a completion prompt), whether JSON was requested
(``response_format`` ``json_object``/``json_schema``, vLLM's ``guided_json`` or
``structured_outputs.json``, or a prompt that says "JSON"), whether the answer is valid JSON
(an object or an array, optionally inside one Markdown code fence) and whether it opens like a
refusal. Shared by ``show``, ``export`` and ``drift`` so they agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

DEFAULT_REFUSAL_OPENINGS: tuple[str, ...] = (
    "i'm sorry",
    "i am sorry",
    "sorry, but",
    "sorry, i",
    "i apologize",
    "i apologise",
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "i must decline",
    "as an ai",
    "as a language model",
    "unfortunately, i can",
)
"""Lower-case openings that mark a refusal-style answer (the reviewer may add their own)."""
OPENING_CHARS = 120
_JSON_WORD = re.compile(r"\bjson\b", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(?P<body>.*)\n?```$", re.DOTALL)
_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


def content_text(content: Any) -> str:
    """A message's content as text: strings as they are, parts joined, images noted."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, dict):
                kind = str(part.get("type", ""))
                if isinstance(part.get("text"), str):
                    pieces.append(part["text"])
                elif kind:
                    pieces.append(f"[{kind}]")
            elif isinstance(part, str):
                pieces.append(part)
        return "\n".join(pieces)
    return json.dumps(content, ensure_ascii=False)


def messages(request: dict[str, Any]) -> list[tuple[str, str]]:
    """``(role, text)`` for each chat message, or one ``("prompt", text)`` for completions."""
    chat = request.get("messages")
    if isinstance(chat, list):
        return [
            (str(item.get("role", "?")), content_text(item.get("content")))
            for item in chat
            if isinstance(item, dict)
        ]
    for field in ("prompt", "input"):
        value = request.get(field)
        if isinstance(value, str):
            return [(field, value)]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [(field, "\n".join(value))]
    if isinstance(request.get("raw"), str):
        return [("raw", request["raw"])]
    return []


def prompt_text(request: dict[str, Any]) -> str:
    """The whole prompt as readable text (``role: text`` blocks for chats)."""
    turns = messages(request)
    if len(turns) == 1 and turns[0][0] in ("prompt", "input", "raw"):
        return turns[0][1]
    return "\n\n".join(f"{role}: {text}" for role, text in turns)


def wants_json(request: dict[str, Any]) -> bool:
    """Whether the client asked for JSON (a format setting, or a prompt that says so)."""
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in _JSON_FORMATS:
        return True
    if request.get("guided_json") is not None:
        return True
    structured = request.get("structured_outputs")
    if isinstance(structured, dict) and structured.get("json") is not None:
        return True
    return any(_JSON_WORD.search(text) for _, text in messages(request))


def is_valid_json(text: str | None) -> bool:
    """Whether an answer is a JSON object or array (one surrounding code fence allowed)."""
    body = (text or "").strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    if not body or body[0] not in "[{":
        return False
    try:
        return isinstance(json.loads(body), dict | list)
    except (json.JSONDecodeError, RecursionError):
        return False


def normalise_opening(text: str | None) -> str:
    """The first characters of an answer, lower-cased, straight apostrophes, single spaces."""
    opening = (text or "")[: OPENING_CHARS * 2].translate(_APOSTROPHES).lower()
    return _SPACES.sub(" ", opening).strip()[:OPENING_CHARS]


def is_refusal(text: str | None, openings: Sequence[str] = DEFAULT_REFUSAL_OPENINGS) -> bool:
    """Whether the answer opens with one of ``openings`` (compared lower-case)."""
    opening = normalise_opening(text)
    return bool(opening) and any(opening.startswith(phrase) for phrase in openings)


def load_request(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """A record's ``request`` column as a dict (DuckDB hands JSON over as text)."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"body": value}

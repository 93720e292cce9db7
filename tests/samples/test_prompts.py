"""How a record's request and answer are read: prompts, JSON requests, JSON validity, refusals."""

from __future__ import annotations

import pytest

from sidecar.emulator.text import REFUSAL
from sidecar.samples.prompts import (
    is_refusal,
    is_valid_json,
    load_request,
    messages,
    prompt_text,
    wants_json,
)


def test_chat_and_completion_prompts_render_as_text() -> None:
    """Chat turns become ``role: text``; content parts are joined, images are noted."""
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:..."}},
                ],
            },
        ]
    }
    assert prompt_text(chat) == "system: Be brief.\n\nuser: What is this?\n[image_url]"
    assert prompt_text({"prompt": "Once upon"}) == "Once upon"
    assert messages({"prompt": ["a", "b"]}) == [("prompt", "a\nb")]
    assert prompt_text({"raw": "not json"}) == "not json"
    assert load_request('{"prompt": "x"}') == {"prompt": "x"}
    assert load_request("[1, 2]") == {"body": [1, 2]}


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"response_format": {"type": "json_object"}, "messages": []}, True),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, True),
        ({"guided_json": {"type": "object"}, "prompt": "x"}, True),
        ({"structured_outputs": {"json": {"type": "object"}}, "prompt": "x"}, True),
        ({"messages": [{"role": "user", "content": "Reply in JSON please"}]}, True),
        ({"response_format": {"type": "text"}, "prompt": "a jsonish answer"}, False),
        ({"messages": [{"role": "user", "content": "Hello"}]}, False),
    ],
)
def test_json_requests_are_recognised(request_body: dict[str, object], expected: bool) -> None:
    """A format setting or a prompt that says "JSON" (as a word) means JSON was requested."""
    assert wants_json(request_body) is expected


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('{"a": 1}', True),
        (" [1, 2] \n", True),
        ('```json\n{"a": [1, 2]}\n```', True),
        ('{"a": 1', False),
        ("42", False),
        ('"just a string"', False),
        ("Sure! Here is the JSON: {}", False),
        ("", False),
    ],
)
def test_json_validity(text: str, valid: bool) -> None:
    """Only a JSON object or array (optionally in one code fence) counts as valid."""
    assert is_valid_json(text) is valid


def test_refusal_openings() -> None:
    """The emulator's refusal and common phrasings count; answers that merely mention them don't."""
    assert is_refusal("".join(REFUSAL))
    assert is_refusal("  I\u2019m sorry, I can\u2019t do that.")
    assert is_refusal("As an AI language model, I ...")
    assert not is_refusal("The answer is 42. I'm sorry it took long.")
    assert not is_refusal("")
    assert is_refusal("Lo siento, no puedo.", ("lo siento",))

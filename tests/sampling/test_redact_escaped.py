"""Secrets in JSON text (tool-call arguments, raw bodies) after an escape such as ``\\n``.

Tool-call arguments are recorded as the JSON text the model wrote, so a secret at the start of a
line there follows the two characters ``\\`` ``n``: a word-boundary check that sees the ``n``
must not let it through. Also the variants a reviewer found unredacted: an Amex number with dots,
a card or phone number sent as an integral JSON float, a URL-encoded Slack webhook.
"""

from __future__ import annotations

import json

import pytest

from sidecar.sampling.redact import Redactor

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AFTER_ESCAPE = {
    "jwt": JWT,
    "api_key": "sk-proj-abcdefghijklmnopqrstuvwx",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "iban": "GB82WEST12345698765432",
    "card": "4111111111111111",
    "phone": "4155552671",
    "ipv4": "203.0.113.77",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
}


@pytest.mark.parametrize("escape", ["\n", "\t", "\r"])
@pytest.mark.parametrize("kind", sorted(AFTER_ESCAPE))
def test_secret_after_a_json_escape_is_redacted(kind: str, escape: str) -> None:
    secret = AFTER_ESCAPE[kind]
    arguments = json.dumps({"note": f"see below{escape}{secret}{escape}thanks"})
    assert f"\\{escape.encode('unicode_escape').decode()[1]}{secret}" in arguments
    out = Redactor().clean_text(arguments)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out


def test_jwt_glued_to_a_word_is_redacted() -> None:
    out = Redactor().clean_text(f"token_{JWT}")
    assert JWT[-20:] not in out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("amex 3782.822463.10005 ok", "822463"),
        (
            "hook https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0000%2FB0000%2FXXXXXXXXXXXX",
            "XXXXXXXX",
        ),
        (
            '{"u": "https:\\/\\/hooks.slack.com\\/services\\/T0000\\/B0000\\/XXXXXXXXXXXX"}',
            "XXXXXXXX",
        ),
    ],
)
def test_encoded_variants_are_redacted(text: str, secret: str) -> None:
    assert secret not in Redactor().clean_text(text)


@pytest.mark.parametrize("number", [4111111111111111.0, 4155552671.0, -4111111111111111])
def test_numbers_that_are_cards_or_phones_are_redacted(number: float) -> None:
    out = json.dumps(Redactor().clean({"n": number}))
    assert str(abs(int(number))) not in out
    assert "[REDACTED:" in out

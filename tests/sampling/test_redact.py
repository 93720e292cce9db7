"""Redaction patterns: each kind is caught, look-alikes are not, the result is proven clean."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import ConfigError, Settings
from sidecar.sampling.patterns import BUILTIN_PATTERNS, custom_patterns, iban_ok, luhn_ok
from sidecar.sampling.redact import RedactionError, Redactor

PLANTED: dict[str, list[str]] = {
    "email": ["john.doe+tag@example.co.uk", "a_b@sub.example.org"],
    "phone": [
        "+1 (555) 123-4567",
        "555-123-4567",
        "+44 20 7946 0958",
        "+4915112345678",
        "030 12345678",
    ],
    "card": ["4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "3782 822463 10005"],
    "ipv4": ["192.168.1.20", "10.0.0.1", "8.8.8.8"],
    "ipv6": ["2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "::ffff:10.0.0.1"],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
    ],
    "api_key": [
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
        "hf_abcdefghijklmnopqrstuvwxyzABCDEF",
        "sk_live_abcdefghijklmnop1234",
    ],
    "aws_key": ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    ],
    "bearer": ["Bearer abcDEF123456ghiJKL", "bearer 0123456789abcdef.xyz"],
}
"""Kind -> values that must never survive redaction."""

LOOKALIKES = [
    "4111 1111 1111 1112",  # Luhn-invalid card-shaped number
    "1234567812345678",  # Luhn-invalid digit run
    "order 123456789012",
    "2024-01-15 2024-02-16",  # dates
    "version 1.2.3 and 3.14159",
    "12:30:45",  # a time, not an IPv6 address
    "a[::2]",  # Python slicing
    "max_tokens=100000",
    "the bearer of bad news",
    "task-abcdefghijklmnopqrstuvwxyz",  # 'sk-' inside a word
    "DE89370400440532013001",  # IBAN with a wrong check digit: not an IBAN
]


@pytest.mark.parametrize(
    ("kind", "value"), [(kind, value) for kind, values in PLANTED.items() for value in values]
)
def test_each_pattern_is_redacted(kind: str, value: str) -> None:
    """Every planted value disappears and is replaced by its kind's token."""
    counts: Counter[str] = Counter()
    out = Redactor().clean_text(f"before {value} after.", counts)
    assert value not in out
    assert f"[REDACTED:{kind}]" in out
    assert out.startswith("before ")
    assert out.endswith(" after.")
    assert counts[kind] >= 1


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_left_alone(text: str) -> None:
    """Numbers and words that only look like secrets are not redacted."""
    if text.startswith("DE89"):
        assert not iban_ok(text)
    assert Redactor().clean_text(text) == text


def test_luhn_and_mod97_checks() -> None:
    """The validators agree with the published test numbers."""
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("DE89370400440532013001")


def test_credentials_in_assignments_keep_the_key() -> None:
    """``password=...`` and ``Authorization: ...`` lose the value and keep the name."""
    redactor = Redactor()
    out = redactor.clean_text(
        "password=hunter22 api_key: 'abcdef123456' aws_secret_access_key=wJalrXUtnFEMI/K7MDENG"
    )
    assert out == (
        "password=[REDACTED:credential] api_key: '[REDACTED:credential]' "
        "aws_secret_access_key=[REDACTED:credential]"
    )
    assert redactor.clean_text("Authorization: Basic dXNlcjpwYXNz") == (
        "Authorization: [REDACTED:authorization]"
    )


def test_private_key_block() -> None:
    """A PEM private key is removed as a whole block."""
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----\nok"
    assert Redactor().clean_text(text) == "key:\n[REDACTED:private_key]\nok"


def test_user_patterns() -> None:
    """User-supplied expressions are applied after the built-ins."""
    redactor = Redactor((*Redactor()._patterns, *custom_patterns([r"\bPRJ-\d{4}\b"])))
    assert redactor.clean_text("ticket PRJ-1234 open") == "ticket [REDACTED:custom] open"


def test_credential_keys_in_json_are_replaced_whole() -> None:
    """Values under credential-named keys go, whatever they look like; other keys stay."""
    tree = {
        "api_key": "x",
        "nested": [{"Authorization": "anything"}, {"password": 1234}],
        "max_tokens": 5,
    }
    assert Redactor().clean(tree) == {
        "api_key": "[REDACTED:credential]",
        "nested": [
            {"Authorization": "[REDACTED:credential]"},
            {"password": "[REDACTED:credential]"},
        ],
        "max_tokens": 5,
    }


def test_numbers_that_are_cards_are_redacted() -> None:
    """A Luhn-valid card number sent as a JSON number is redacted too."""
    assert Redactor().clean({"card": 4111111111111111, "seed": 1234567}) == {
        "card": "[REDACTED:card]",
        "seed": 1234567,
    }


def test_redaction_is_idempotent_and_post_checked() -> None:
    """Redacting the output again changes nothing, and the post-check finds nothing in it."""
    redactor = Redactor()
    text = " ".join(value for values in PLANTED.values() for value in values)
    once = redactor.clean_text(text)
    assert redactor.clean_text(once) == once
    assert redactor.find(once) is None


def test_post_check_fails_closed_on_a_self_matching_pattern() -> None:
    """A user pattern that matches its own replacement cannot be made clean: RedactionError."""
    redactor = Redactor(custom_patterns([r"REDACTED"]))
    with pytest.raises(RedactionError):
        redactor.clean_text("this says REDACTED")


secrets = st.sampled_from([value for values in PLANTED.values() for value in values])
filler = st.text(alphabet=st.characters(categories=["L", "Zs"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(filler, secrets), min_size=1, max_size=5), filler)
def test_planted_secrets_never_survive(pieces: list[tuple[str, str]], tail: str) -> None:
    """Secrets mixed with letters and spaces never survive, whatever surrounds them."""
    text = "".join(f"{pad} {secret} " for pad, secret in pieces) + tail
    out = Redactor().clean_text(text)
    for _pad, secret in pieces:
        assert secret not in out


CATASTROPHIC = r"(a+)+$"
"""Exponential in Python's backtracking ``re`` on ``"a" * 41 + "!"``: days of one core."""

REDACT_IN_A_CHILD = """
import sys, time
from sidecar.config import Settings
from sidecar.sampling.redact import Redactor
redactor = Redactor.from_settings(Settings(redact_patterns=[sys.argv[1]]))
started = time.perf_counter()
out = redactor.clean_text("a" * 41 + "!")
print(repr(out), time.perf_counter() - started)
"""


def test_a_catastrophic_user_pattern_cannot_stall_redaction() -> None:
    """``(a+)+$`` over a 41-character prompt finishes in milliseconds (RE2 is linear)."""
    result = subprocess.run(
        [sys.executable, "-c", REDACT_IN_A_CHILD, CATASTROPHIC],
        capture_output=True,
        text=True,
        timeout=60,  # the backtracking engine would still be running
        check=True,
    )
    text, seconds = result.stdout.rsplit(" ", 1)
    assert text == repr("a" * 41 + "!")
    assert float(seconds) < 1.0


def test_a_user_pattern_redacts_with_re2_semantics() -> None:
    """User patterns match as RE2 does; character offsets hold in non-ASCII text."""
    redactor = Redactor((*BUILTIN_PATTERNS, *custom_patterns([r"(a+)+$", r"ticket-\d{4}"])))
    assert redactor.clean_text("é ticket-1234 then aaa") == (
        "é [REDACTED:custom] then [REDACTED:custom]"
    )


def test_a_pattern_re2_cannot_run_is_refused_at_start_up() -> None:
    """Look-arounds and back-references are not RE2: the setting names the problem."""
    with pytest.raises(ConfigError, match=r"does not compile: RE2 cannot compile it: .*\(\?<"):
        Settings(redact_patterns=[r"(?<=x)y"])

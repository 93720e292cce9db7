"""The redactor's pre-filters never change its result."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.sampling.patterns import BUILTIN_PATTERNS, custom_patterns
from sidecar.sampling.redact import RedactionError, Redactor

UNFILTERED = Redactor(
    tuple(dataclasses.replace(pattern, hint=None) for pattern in BUILTIN_PATTERNS)
)
"""Every regex over every text: what the pre-filters must never change."""

SPECIAL_LETTERS = "\u212a\u017f\u0131\u0130\u0660\u0661\u0662\u0663\u0664\u0665\u0966\uff11"
"""Kelvin sign, long s, dotless and dotted i, Arabic-Indic, Devanagari, fullwidth digits: what
a case-insensitive ``re`` or ``\\d`` matches beyond ASCII."""

_fragments = st.sampled_from(
    [
        "api_key=hunter2secret",
        "Authorization: Basic dXNlcjpwYXNz",
        "AUTHORIZATION=abcdefgh",
        "bearer abcdefghijk1234",
        "pas\u017fword=hunter22hunter",
        "api_\u212aey: zzzzzzzz99",
        "secret=\u0661\u0662\u0663\u0664\u0665\u0666",
        "4111 1111 1111 1111",
        "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
        "+1 (555) 123-4567",
        "192.168.1.20",
        "DE89 3704 0044 0532 0130 00",
        "AKIAIOSFODNN7EXAMPLE",
        "sk-abcdefghijklmnopqrstu",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "bob@example.com",
        "fe80::1",
        "token",
        "key",
        "_",
        ".",
        ":",
        " ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            _fragments,
            st.text(alphabet=st.sampled_from("aKks:._-=@ 0129" + SPECIAL_LETTERS), max_size=12),
        ),
        max_size=8,
    )
)
def test_pre_filters_never_change_what_is_redacted(parts: list[str]) -> None:
    """With and without the pre-filters: same text, same counts, also the second time."""
    text = "".join(parts)
    filtered, plain = Redactor(), UNFILTERED
    counts_filtered: Counter[str] = Counter()
    counts_plain: Counter[str] = Counter()
    assert filtered.clean_text(text, counts_filtered) == plain.clean_text(text, counts_plain)
    assert counts_filtered == counts_plain
    assert filtered.clean_text(text) == plain.clean_text(text)
    assert filtered.find(text) == plain.find(text)


def test_a_user_pattern_matching_the_credential_token_still_fails_closed() -> None:
    """clean() checks the token it puts under a credential key, as the post-check did."""
    redactor = Redactor((*BUILTIN_PATTERNS, *custom_patterns([r"REDACTED:credential"])))
    with pytest.raises(RedactionError):
        redactor.clean({"messages": [{"api_key": "x"}]})

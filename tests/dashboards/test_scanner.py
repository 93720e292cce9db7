"""The PromQL scanner behind the lint rules finds what they need, so they cannot pass vacuously."""

from __future__ import annotations

import pytest

from tests.dashboards.support import (
    defaults,
    ranges,
    regex_value,
    selectors,
    substitute,
)


def test_finds_selectors_matchers_ranges_and_calls() -> None:
    """Names, matchers, ranges and the enclosing calls of every selector are reported."""
    found = selectors(
        'histogram_quantile(0.9, sum by (le, model_name) (rate(a_bucket{x="1"}[5m]) '
        'or rate(b_bucket{y=~"$m|"}[$__rate_interval]))) / on () group_left () max(c)'
    )
    assert [(s.name, s.matchers, s.range, s.function) for s in found] == [
        ("a_bucket", '{x="1"}', "[5m]", "rate"),
        ("b_bucket", '{y=~"$m|"}', "[$__rate_interval]", "rate"),
        ("c", "", None, "max"),
    ]
    assert found[0].enclosing == ("histogram_quantile", "sum", "rate")


def test_keywords_labels_numbers_and_variables_are_not_selectors() -> None:
    """``by``/``on`` label lists, ``or``/``bool``, numbers and ``$vars`` are skipped."""
    found = selectors(
        "sum(x) by (instance) * $gpus_per_instance + 1e6 > bool 0 or vector(0) "
        'unless on (job) count without (engine) ({__name__=~"a|b", job="j"})'
    )
    assert [(s.name, s.matchers) for s in found] == [
        ("x", ""),
        ("", '{__name__=~"a|b", job="j"}'),
    ]


def test_subquery_ranges_are_found() -> None:
    """A subquery window is reported by ``ranges`` though it belongs to no selector."""
    expr = 'avg_over_time(clamp_max(vllm:x{a="b"}, 1)[$__rate_interval:])'
    assert ranges(expr) == ["[$__rate_interval:]"]
    assert selectors(expr)[0].range is None


def test_unscannable_text_is_an_error() -> None:
    """Characters PromQL does not have make the scanner fail instead of skipping them."""
    with pytest.raises(ValueError, match="cannot scan"):
        selectors("sum(x) ; drop")


def test_substitution_follows_grafana() -> None:
    """``$x`` and ``${x}`` are replaced, unknown variables fail, values are regex-escaped."""
    assert substitute(
        'a{j=~"$job"}[${__rate_interval}]', {"job": "j", "__rate_interval": "1m"}
    ) == ('a{j=~"j"}[1m]')
    with pytest.raises(KeyError):
        substitute("$missing", {})
    assert regex_value("127.0.0.1:80") == "127\\\\.0\\\\.0\\\\.1:80"
    board = {
        "templating": {
            "list": [
                {"name": "job", "type": "query", "allValue": ".*"},
                {"name": "price", "type": "textbox", "query": "2.5"},
            ]
        }
    }
    assert defaults(board, {"__range": "1h"}) == {"__range": "1h", "job": ".*", "price": "2.5"}

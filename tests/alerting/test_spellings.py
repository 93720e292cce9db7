"""Every rate-based rule keeps working while vLLM's two spellings share a window."""

from __future__ import annotations

import yaml

from tests.alerting import spelling_cases
from tests.alerting.promtool_cases import RULES_FILE
from tests.dashboards.support import selectors


def test_committed_spelling_tests_match_a_fresh_rendering() -> None:
    """alerts/tests/spellings.test.yaml is generated (python -m tests.alerting.spelling_cases)."""
    assert spelling_cases.PATH.read_text() == spelling_cases.render()


def test_every_rate_based_recording_rule_is_checked_with_both_spellings() -> None:
    """Each recorded series built on rate() of vLLM counters has an overlap and a switch check."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rate_based = {
        rule["record"]
        for group in groups
        for rule in group["rules"]
        if "record" in rule and "rate(vllm" in rule["expr"]
    }
    assert len(rate_based) > 20, "the rule file has no rate-based recording rules?"
    assert rate_based <= set(spelling_cases.EXPECTED)


def test_no_range_vector_spans_both_spellings() -> None:
    """A regex over both spellings in any range vector (rate, increase, changes, *_over_time...)
    is the defect this guards against; every selector of every rule is scanned."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    ranged = [
        found
        for group in groups
        for rule in group["rules"]
        for found in selectors(rule["expr"])
        if found.range is not None
    ]
    assert len(ranged) > 50, "the scanner found no range vectors?"
    for found in ranged:
        assert found.name, f"range over a name regex: {found.matchers}{found.range}"
        assert "__name__" not in found.matchers, found.matchers


def test_rule_file_header_describes_the_spelling_join_it_uses() -> None:
    """The header once told readers vLLM series are matched by a ``__name__`` regex: the very
    spelling that failed inside rate(). It must describe the ``or`` of both spellings instead."""
    header = "".join(
        line for line in RULES_FILE.read_text().splitlines(keepends=True) if line.startswith("#")
    )
    assert '__name__=~"vllm[:_]' not in header
    assert "(f(vllm:x) or f(vllm_x))" in header

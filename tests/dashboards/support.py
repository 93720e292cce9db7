"""Helpers for the dashboard tests: read the committed boards, walk queries, scan PromQL.

The scanner is deliberately small: it finds every vector selector in an expression together with
its matchers, its range and the function it is the direct argument of. That is all the ported
dashboard-linter rules need; whether an expression *parses* is left to promtool and Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
PROVISIONED = DASHBOARDS / "json"
IMPORT_VARIANTS = DASHBOARDS / "grafana-com"

AGGREGATORS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})


def committed_dashboards() -> dict[str, dict[str, Any]]:
    """File stem -> parsed provisioned dashboard."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(PROVISIONED.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row (rows nest their panels only when collapsed)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Template variables by name."""
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def regex_value(value: str) -> str:
    """A label value as Grafana writes it into a ``=~"..."`` matcher: regex- then string-escaped."""
    return re.sub(r"[$^*+?.()|\\{}\[\]]", lambda m: "\\\\" + m.group(0), value)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` / ``${name}`` like Grafana does; unknown variables raise KeyError."""

    def replace(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def defaults(dashboard: Mapping[str, Any], builtins: Mapping[str, str]) -> dict[str, str]:
    """Each variable's default as a query sees it (*All* -> its ``allValue``), plus builtins."""
    values = dict(builtins)
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            values[name] = variable["allValue"]
        elif variable["type"] == "textbox":
            values[name] = variable["query"]
    return values


@dataclass(frozen=True, slots=True)
class Selector:
    """One vector selector: ``name{matchers}[range]`` and the calls around it, innermost last.

    ``enclosing`` holds ``None`` for plain grouping parentheses, so ``enclosing[-1]`` is the
    function the selector is a direct argument of (or None).
    """

    name: str
    matchers: str
    range: str | None
    enclosing: tuple[str | None, ...]

    @property
    def function(self) -> str | None:
        """The function this selector is a direct argument of."""
        return self.enclosing[-1] if self.enclosing else None


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<braces>\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<variable>\$\{\w+\}|\$\w+)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>[()\[\],])
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=])
    """,
    re.VERBOSE,
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot scan PromQL at {expr[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group(0)))
    return tokens


def _skip_group(tokens: list[tuple[str, str]], index: int) -> int:
    """Index after the parenthesised label list starting at ``tokens[index]`` (if any)."""
    if index < len(tokens) and tokens[index] == ("punct", "("):
        while tokens[index] != ("punct", ")"):
            index += 1
        return index + 1
    return index


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    stack: list[str | None] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in GROUPING:
            index = _skip_group(tokens, index + 1)
            continue
        if kind == "ident" and text in AGGREGATORS:
            index = _skip_group(tokens, index + 2) if following[1] in GROUPING else index + 1
            if tokens[index] != ("punct", "("):
                raise ValueError(f"aggregation {text} without arguments in {expr!r}")
            stack.append(text)
            index += 1
            continue
        if kind == "ident" and text not in KEYWORDS and following == ("punct", "("):
            stack.append(text)
            index += 2
            continue
        if (kind == "ident" and text not in KEYWORDS) or kind == "braces":
            name = text if kind == "ident" else ""
            index += 1
            matchers = ""
            if kind == "braces":
                matchers = text
            elif index < len(tokens) and tokens[index][0] == "braces":
                matchers = tokens[index][1]
                index += 1
            selected_range = None
            if index < len(tokens) and tokens[index][0] == "range":
                selected_range = tokens[index][1]
                index += 1
            found.append(Selector(name, matchers, selected_range, tuple(stack)))
            continue
        if (kind, text) == ("punct", "("):
            stack.append(None)
        elif (kind, text) == ("punct", ")"):
            stack.pop()
        index += 1
    return found


def ranges(expr: str) -> list[str]:
    """Every range or subquery bracket in ``expr`` (``[5m]``, ``[$__rate_interval:]``)."""
    return [text for kind, text in _tokens(expr) if kind == "range"]

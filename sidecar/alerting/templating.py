"""Render alert annotations the way Prometheus does, so both paths send the same text.

Annotations are written once, in Prometheus' Go-template dialect, and rendered twice: by
Prometheus from the rule file and by the sidecar's engine here. This module implements the small
subset the catalogue uses and refuses everything else, so a template that would render
differently in the two places fails the catalogue test instead of paging with garbage:

* ``{{ $labels.NAME }}``
* ``{{ $value | humanize }}``, ``humanizePercentage``, ``humanizeDuration``
* ``{{ printf "%.2f" $value }}`` (any ``%.Nf``)

Before that, ``${param}`` placeholders are filled from the configuration (thresholds, SLO
targets), which is how one template serves every configured threshold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_LABEL = re.compile(r"^\$labels\.([A-Za-z_][A-Za-z0-9_]*)$")
_PIPE = re.compile(r"^\$value\s*\|\s*([A-Za-z]+)$")
_PRINTF = re.compile(r'^printf\s+"%\.(\d)f"\s+\$value$')
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


class TemplateError(ValueError):
    """A template uses something outside the supported subset, or names an unknown parameter."""


def _go_g4(value: float) -> str:
    """Go's ``%.4g`` (Python's matches it, except for the spelling of NaN and infinities)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def humanize(value: float) -> str:
    """Prometheus' ``humanize``: 4 significant digits and an SI prefix (``1.235M``, ``12m``)."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _go_g4(value)
    prefix = ""
    if abs(value) >= 1:
        for candidate in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = candidate
            value /= 1000
        return _go_g4(value) + prefix
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return _go_g4(value) + prefix


def humanize_percentage(value: float) -> str:
    """Prometheus' ``humanizePercentage``: a 0..1 ratio as ``85%`` (4 significant digits)."""
    return _go_g4(value * 100) + "%"


def humanize_duration(value: float) -> str:
    """Prometheus' ``humanizeDuration``: seconds as ``1d 2h 3m 4s``, ``12.5s`` or ``250ms``."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _go_g4(value) + "s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_go_g4(value)}s"
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return f"{_go_g4(value)}{prefix}s"


def _printf_fixed(digits: int, value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.{digits}f}"


_FILTERS: Mapping[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}


def _action(expression: str, labels: Mapping[str, str], value: float) -> str:
    label = _LABEL.match(expression)
    if label:
        # Go renders a missing map key as "<no value>"; a test must catch that, not hide it.
        return labels.get(label.group(1), "<no value>")
    piped = _PIPE.match(expression)
    if piped and piped.group(1) in _FILTERS:
        return _FILTERS[piped.group(1)](value)
    printf = _PRINTF.match(expression)
    if printf:
        return _printf_fixed(int(printf.group(1)), value)
    raise TemplateError(f"unsupported template action {{{{ {expression} }}}}")


def check(template: str) -> None:
    """Raise :class:`TemplateError` when ``template`` leaves the supported subset."""
    render(template, {}, 0.0)
    if _PARAM.search(template):
        raise TemplateError(f"unfilled parameter in {template!r}")


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    """Render a Go-template annotation for one alert instance, as Prometheus would."""
    return _ACTION.sub(lambda match: _action(match.group(1), labels, value), template)


def fill(template: str, params: Mapping[str, str]) -> str:
    """Replace ``${name}`` placeholders with configured values (before Go templating)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise TemplateError(f"template names unknown parameter ${{{name}}}")
        return params[name]

    return _PARAM.sub(one, template)

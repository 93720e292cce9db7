"""Declared settings: type, default, bounds and description, and the checks they imply.

:class:`~sidecar.config.Settings` declares each setting once with :func:`setting`; this module
turns those declarations into value coercion (strings from flags and the environment become
numbers, booleans, paths), bound checks, one-line :class:`ConfigError` messages that name the
field, and the JSON schema the Helm chart validates ``sidecar.settings`` with. Kept apart from
the declarations so ``config.py`` reads as the list of settings.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from sidecar.durations import parse_seconds

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_BOUNDS = (
    ("gt", "exclusiveMinimum", "greater than"),
    ("ge", "minimum", "at least"),
    ("lt", "exclusiveMaximum", "less than"),
    ("le", "maximum", "at most"),
)


class ConfigError(ValueError):
    """An invalid setting, with a one-line message that names the field."""


MAX_CONFIG_BYTES = 1024 * 1024
"""A settings or keys file larger than this is not one: refused before parsing (bounded time)."""
_MAX_INT = 2**63 - 1
_SHOWN = 120
"""Longest echo of a bad value in an error message (one line, whatever was given)."""


def load_yaml_file(path: Path, what: str) -> Any:
    """A YAML (or JSON) file's data, refusing what no settings file needs and an attacker uses.

    Refused with one :class:`ConfigError` line (never the file's content): over
    :data:`MAX_CONFIG_BYTES`, not UTF-8, anchors and aliases (a 348-byte "billion laughs" file
    expands to gigabytes), duplicate keys (YAML keeps the last one silently), syntax errors.
    """
    import yaml  # only when a file is given

    class _Strict(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConfigError(f"{what}: {path} line {mark.line + 1}: aliases are not allowed")
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise ConfigError(f"{what}: {path} line {line}: anchors are not allowed")
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str | int | float | bool) or key is None:
                    if key in seen:
                        line = key_node.start_mark.line + 1
                        shown = str(key)[:_SHOWN]
                        raise ConfigError(f"{what}: {path} line {line}: duplicate key {shown!r}")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what}: {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_Strict)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = _one_line(str(exc.problem or "syntax error"))[:_SHOWN]
        raise ConfigError(
            f"{what}: {path} is not valid YAML ({where.strip()}: {problem})"
        ) from None
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"{what}: {path} is not valid YAML") from None


@dataclass(frozen=True, slots=True)
class Limits:
    """What :func:`setting` records beside the default."""

    description: str = ""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    pattern: str | None = None
    duration: bool | None = None
    """Seconds that may also be written ``5m``; None: decided by the name (see ``is_duration``)."""


DURATION_SUFFIXES = ("_seconds", "_interval", "_timeout")
"""A setting whose name ends so holds seconds and also takes Prometheus durations (``5m``)."""


def setting(
    default: Any = MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    description: str = "",
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    duration: bool | None = None,
) -> Any:
    """Declare one setting (a dataclass field carrying its description and bounds).

    ``duration=True`` marks seconds (or a mapping to seconds) that may be written ``5m``; names
    ending in ``_seconds``, ``_interval`` or ``_timeout`` are durations without saying so.
    """
    limits = Limits(description, gt, ge, lt, le, pattern, duration)
    if factory is not None:
        return field(default_factory=factory, metadata={"limits": limits})
    return field(default=default, metadata={"limits": limits})


@dataclass(frozen=True, slots=True)
class SettingField:
    """One declared setting, as the CLI, the Helm schema and the checks read it."""

    name: str
    annotation: Any
    """The declared type, ``Annotated`` extras (value checks) included."""
    default: Any
    """The default value, or None when it is computed at start-up (``factory``)."""
    limits: Limits

    @property
    def description(self) -> str:
        return self.limits.description

    @property
    def is_duration(self) -> bool:
        """Seconds, also accepted as a Prometheus duration (``30s``, ``5m``, ``1h30m``)."""
        if self.limits.duration is not None:
            return self.limits.duration
        return self.name.endswith(DURATION_SUFFIXES)

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed values of a ``Literal`` setting, else empty."""
        return _literal_values(self.annotation)

    @property
    def metavar(self) -> str:  # noqa: PLR0911 - one answer per kind of value
        """What the flag takes, for ``--help``: ``URL``, ``HOST:PORT``, ``SECONDS``, ``JSON`` ..."""
        if self.structured:
            return "JSON"
        if self.is_duration:
            return "SECONDS"
        base = _unwrap(self.annotation)
        checks = {getattr(check, "__name__", "") for check in _checks(self.annotation)}
        if "_check_http_url" in checks:
            return "URL"
        if "_check_host_port" in checks:
            return "HOST:PORT"
        if base is Path:
            return "PATH"
        if base is int:
            return "BYTES" if self.name.endswith("_bytes") else "N"
        if base is float:
            return "RATE" if self.name.endswith("_rate") else "NUMBER"
        return "TEXT"

    @property
    def structured(self) -> bool:
        """Dict and list settings: JSON on the command line and in the environment."""
        return _is_structured(self.annotation)

    def from_text(self, raw: str) -> Any:
        """A flag's or environment variable's text as the value to check (JSON if structured)."""
        if not self.structured:
            return raw
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.name}: not valid JSON ({exc.msg})") from None

    def check(self, value: Any) -> Any:
        """``value`` coerced to the declared type and checked; ConfigError naming the field."""
        try:
            result = _coerce(self.annotation, _as_seconds(value) if self.is_duration else value)
            _check_limits(self.limits, result)
        except ValueError as exc:
            message = _one_line(str(exc))[:300]
            shown = (
                ""
                if isinstance(value, dict) or f"got {value!r}" in message
                else f" (got {_short(repr(value))})"
            )
            raise ConfigError(f"{self.name}: {message}{shown}") from None
        return result

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the value (bounds included), with the description."""
        schema = _schema(self.annotation, self.limits)
        if self.limits.description:
            schema["description"] = self.limits.description
        return schema


@cache
def setting_fields(cls: type) -> Mapping[str, SettingField]:
    """The declared settings of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    declared: dict[str, SettingField] = {}
    for item in fields(cls):
        limits = item.metadata.get("limits", Limits())
        default = None if item.default is MISSING else item.default
        declared[item.name] = SettingField(item.name, hints[item.name], default, limits)
    return types.MappingProxyType(declared)


def check_fields(instance: object, declared: Mapping[str, SettingField]) -> dict[str, Any]:
    """Every field of ``instance`` coerced and checked (raises ConfigError on the first bad one)."""
    return {name: spec.check(getattr(instance, name)) for name, spec in declared.items()}


def _as_seconds(value: Any) -> Any:
    """Duration text to seconds, in a mapping too (``alert_for``); None stays None."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        converted = {}
        for key, item in value.items():
            try:
                converted[key] = parse_seconds(item)
            except ValueError as exc:
                raise ValueError(f"entry {key!r}: {exc} (got {item!r})") from None
        return converted
    return parse_seconds(value)


def _unwrap(annotation: Any) -> Any:
    """The plain type under ``Annotated`` and ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _unwrap(inner[0]) if len(inner) == 1 else annotation
    return annotation


def _checks(annotation: Any) -> tuple[Any, ...]:
    """The value checks an ``Annotated`` type (possibly inside ``X | None``) carries."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return typing.get_args(annotation)[1:]
    if origin in (typing.Union, types.UnionType):
        return tuple(c for arg in typing.get_args(annotation) for c in _checks(arg))
    return ()


def _literal_values(annotation: Any) -> tuple[str, ...]:
    base = _unwrap(annotation)
    if typing.get_origin(base) is Literal:
        return tuple(str(arg) for arg in typing.get_args(base))
    return ()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str) -> str:
    """``text`` on one line, cut to :data:`_SHOWN` characters."""
    text = _one_line(text)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (dict, list):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation))
    return False


def _coerce(annotation: Any, value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per type
    """``value`` as ``annotation``, the lenient way flags, env and YAML need (``"5"`` -> 5.0)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        result = _coerce(args[0], value)
        for check in args[1:]:
            result = check(result)
        return result
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(inner, value)
    if origin is Literal:
        if value in args:
            return value
        raise ValueError("expected one of " + ", ".join(repr(arg) for arg in args))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _expected("a mapping")
        key_type, value_type = args
        return {_coerce(key_type, key): _item(value_type, item, key) for key, item in value.items()}
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _expected("a list")
        (item_type,) = args
        return [_item(item_type, item, index) for index, item in enumerate(value)]
    if annotation is bool:
        return _boolean(value)
    if annotation is int:
        return _integer(value)
    if annotation is float:
        return _number(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _expected("a string")
        return value
    if annotation is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise _expected("a path")
        return Path(value)
    raise TypeError(f"unsupported setting type {annotation!r}")  # a declaration bug


def _item(annotation: Any, value: Any, where: object) -> Any:
    """One entry of a mapping or list; errors say which entry and what it held."""
    try:
        return _coerce(annotation, value)
    except ValueError as exc:
        raise ValueError(f"entry {where!r}: {exc} (got {value!r})") from None


def _expected(what: str) -> ValueError:
    return ValueError(f"expected {what}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _expected("a boolean (true/false)")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _expected("an integer")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 40:
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    if number is None:
        raise _expected("an integer")
    if abs(number) > _MAX_INT:
        raise ValueError("is out of range")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _expected("a number")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise _expected("a finite number") from None
    elif isinstance(value, str) and len(value) <= 400:
        try:
            number = float(value.strip())
        except ValueError:
            raise _expected("a number") from None
    else:
        raise _expected("a number")
    if not math.isfinite(number):
        raise _expected("a finite number")
    return number


def _check_limits(limits: Limits, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        for attribute, _, words in _BOUNDS:
            bound = getattr(limits, attribute)
            if bound is None:
                continue
            ok = {
                "gt": value > bound,
                "ge": value >= bound,
                "lt": value < bound,
                "le": value <= bound,
            }[attribute]
            if not ok:
                raise ValueError(f"must be {words} {bound:g}")
    if (
        limits.pattern is not None
        and isinstance(value, str)
        and not re.search(limits.pattern, value)
    ):
        raise ValueError(f"must match {limits.pattern!r}")


def _schema(annotation: Any, limits: Limits) -> dict[str, Any]:
    """JSON schema of a type; bounds go to the non-null branch, as JSON-schema validators need."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _schema(args[0], limits)
    if origin in (typing.Union, types.UnionType):
        options = [_schema(arg, limits) for arg in args if arg is not type(None)]
        return {"anyOf": [*options, {"type": "null"}]}
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1], Limits())}
    if origin is list:
        return {"type": "array", "items": _schema(args[0], Limits())}
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
    schema: dict[str, Any] = {"type": kind[annotation]}
    for attribute, keyword, _ in _BOUNDS:
        bound = getattr(limits, attribute)
        if bound is not None and annotation in (int, float):
            schema[keyword] = bound
    if limits.pattern is not None and annotation is str:
        schema["pattern"] = limits.pattern
    return schema

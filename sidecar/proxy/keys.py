"""Inbound API keys (several, each with a name) and the key the proxy sends to vLLM.

The key file is a YAML (or JSON) mapping ``name: key``. The name is what metrics and sample
records carry (label ``key``); the key itself is never logged, recorded or forwarded. A token is
checked against *every* configured key with :func:`hmac.compare_digest` on SHA-256 digests (as
vLLM does), so neither the position of a matching key nor the length of any key leaks through
timing. Files are read once at start-up; a bad file is a :class:`~sidecar.config.ConfigError`
that names the file and the problem but never echoes a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from pathlib import Path
from typing import Final

import structlog

from sidecar.config import ConfigError
from sidecar.settings_schema import load_yaml_file

MIN_KEY_LENGTH: Final = 16
"""Shorter inbound keys are refused (``allow_insecure_keys`` overrides): guessable."""
log = structlog.get_logger("sidecar.proxy.keys")

GUARDED_PREFIXES: Final = ("/v1", "/v2", "/inference", "/cohere")
"""Paths vLLM's ``AuthenticationMiddleware`` guards; health, metrics and tokenize stay open."""

_NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_BEARER: Final = "bearer "


def requires_key(method: str, path: str) -> bool:
    """Whether vLLM would ask for a key on this request (never for ``OPTIONS``)."""
    return method != "OPTIONS" and path.startswith(GUARDED_PREFIXES)


class KeyRing:
    """Named inbound keys, held only as SHA-256 digests."""

    __slots__ = ("_entries",)

    def __init__(self, keys: dict[str, str]) -> None:
        if not keys:
            raise ConfigError("api_keys_file: no keys configured")
        self._entries = tuple(
            (name, hashlib.sha256(key.encode()).digest()) for name, key in keys.items()
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The key names, in file order."""
        return tuple(name for name, _ in self._entries)

    def identify(self, authorization: str | None) -> str | None:
        """The name of the key in an ``Authorization: Bearer`` header, or None if none matches."""
        if not authorization or authorization[:7].lower() != _BEARER:
            return None
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        found: str | None = None
        for name, expected in self._entries:  # no early exit: same work whichever key matches
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        return found


def _insecure(problem: str, *, allow: bool) -> None:
    """Refuse to start over ``problem``, or only warn when the operator allowed it."""
    if not allow:
        raise ConfigError(f"{problem} (set allow_insecure_keys to accept)")
    log.warning("insecure_keys_accepted", problem=problem)


def _check_mode(path: Path, setting: str, *, allow: bool) -> None:
    """Writable by group or others: refused; readable by others: a warning (a Kubernetes
    Secret volume is 0644 unless ``defaultMode`` says otherwise)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # _read reports it
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        _insecure(f"{setting}: {path} is writable by others (mode {mode:04o})", allow=allow)
    elif mode & stat.S_IROTH:
        log.warning(
            "key_file_readable_by_others", setting=setting, path=str(path), mode=f"{mode:04o}"
        )


def _read(path: Path, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{setting}: cannot read {path}: {reason}") from None


def load_key_ring(path: Path | None, *, allow_insecure: bool = False) -> KeyRing | None:
    """Read ``api_keys_file``; None when no file is configured (inbound keys off)."""
    if path is None:
        return None
    setting = "api_keys_file"
    _check_mode(path, setting, allow=allow_insecure)
    try:
        data = load_yaml_file(path, setting)
    except ConfigError as exc:
        # The parser's message may quote the file's content, i.e. a key: keep it out.
        if "cannot read" in str(exc):
            raise
        raise ConfigError(f"{setting}: {path} is not valid YAML or JSON") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{setting}: {path} must hold a non-empty mapping of name -> key")
    keys: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise ConfigError(
                f"{setting}: key name {name!r} in {path} must be 1-64 characters "
                "of letters, digits, '_', '.', '-'"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{setting}: key {name!r} in {path} must be a non-empty string")
        key = value.strip()
        if len(key) < MIN_KEY_LENGTH:
            _insecure(
                f"{setting}: key {name!r} in {path} is shorter than {MIN_KEY_LENGTH} characters",
                allow=allow_insecure,
            )
        if key in seen:
            raise ConfigError(
                f"{setting}: keys {seen[key]!r} and {name!r} in {path} are the same key"
            )
        seen[key] = name
        keys[name] = key
    return KeyRing(keys)


def load_upstream_key(path: Path | None, *, allow_insecure: bool = False) -> str | None:
    """Read ``upstream_api_key_file`` (vLLM's ``--api-key``); surrounding whitespace is dropped."""
    if path is None:
        return None
    _check_mode(path, "upstream_api_key_file", allow=allow_insecure)
    key = _read(path, "upstream_api_key_file").strip()
    if not key:
        raise ConfigError(f"upstream_api_key_file: {path} is empty")
    if any(ch.isspace() for ch in key) or not key.isprintable():
        raise ConfigError(f"upstream_api_key_file: {path} must hold one key on one line")
    return key

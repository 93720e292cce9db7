"""The error the semantic signals raise when their extra is missing, importable without numpy."""

from __future__ import annotations


class SemanticUnavailable(RuntimeError):
    """The ``[semantic]`` extra is not installed (the message says how to install it)."""

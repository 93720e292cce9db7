"""Placeholder: replaced by the module's real implementation."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Nothing to register yet."""
    del subparsers


def _unused(args: argparse.Namespace) -> int:  # pragma: no cover
    del args
    return 0

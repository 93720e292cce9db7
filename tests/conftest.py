"""Fixtures every test area shares (the helpers themselves live in ``tests/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SHARED, Processes, free_port, wait_for_port

__all__ = ["SHARED", "Processes", "free_port", "wait_for_port"]


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Child processes that are killed (by process group) when the test ends."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def shared_dir() -> Path:
    """Path of ../shared (read-only test data)."""
    assert SHARED.is_dir(), f"missing shared test data at {SHARED}"
    return SHARED

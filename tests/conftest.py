"""Fixtures every test area shares (the helpers themselves live in ``tests/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realvllm.servers import real_vllm
from tests.support import TEST_DATA, Processes, free_port, wait_for_port

__all__ = ["TEST_DATA", "Processes", "free_port", "real_vllm", "wait_for_port"]
# ``real_vllm`` (session): one real vLLM server per flag set, shared by every test area.


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Child processes that are killed (by process group) when the test ends."""
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def test_data() -> Path:
    """Path of tests/data (read-only test data copied into the repo)."""
    assert TEST_DATA.is_dir(), f"missing test data at {TEST_DATA}"
    return TEST_DATA

"""Fixtures for the exposition-parsing tests: the two vLLM pages in tests/data/vllm."""

from __future__ import annotations

import pytest

from tests.scrape.pages import V0_PAGE, V1_PAGE


@pytest.fixture(scope="session")
def v1_page() -> bytes:
    """The current-V1 single-API-server page (with python_/process_ families and _created)."""
    return V1_PAGE.read_bytes()


@pytest.fixture(scope="session")
def v0_page() -> bytes:
    """The vLLM 0.6.3 multiprocess page (old names, no engine label, no _created)."""
    return V0_PAGE.read_bytes()

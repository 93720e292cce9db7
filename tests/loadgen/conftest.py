"""Fixtures of the load generator tests: real emulators, shared with the emulator tests."""

from __future__ import annotations

from tests.emulator.conftest import EmulatorFactory, emulator, start_emulator

__all__ = ["EmulatorFactory", "emulator", "start_emulator"]

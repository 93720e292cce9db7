"""The command line imports only what the invoked subcommand needs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sidecar.cli import SUBCOMMAND_MODULES, build_parser


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_without_a_command_every_subcommand_is_listed() -> None:
    assert _subcommands(build_parser()) == {"run", "check-config", *SUBCOMMAND_MODULES}


@pytest.mark.parametrize("command", sorted(SUBCOMMAND_MODULES))
def test_each_module_registers_the_subcommand_it_is_listed_under(command: str) -> None:
    assert command in _subcommands(build_parser(command))


def test_run_does_not_import_the_tools_it_does_not_use() -> None:
    """``run`` is the long-lived process: no emulator, review stack or terminal UI in memory."""
    probe = (
        "import sys\n"
        "from sidecar.cli import build_parser\n"
        "from sidecar import cli\n"
        "build_parser('run').parse_args(['run', '--upstream', 'http://127.0.0.1:1'])\n"
        "cli._without_rich()\n"
        "import sidecar.app, sidecar.logs\n"
        "heavy = ['numpy', 'duckdb', 'matplotlib', 'scipy', 'boto3', 'sidecar.emulator',\n"
        "         'sidecar.loadgen', 'sidecar.samples', 'sidecar.demo', 'sidecar.top', 'rich',\n"
        "         'pydantic', 'yaml']\n"
        "print(','.join(name for name in heavy if sys.modules.get(name) is not None))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == ""

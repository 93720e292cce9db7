"""``pip install .`` without extras: every command starts; one that needs an extra says which.

A plain virtualenv (no system site-packages, so no numpy or DuckDB) gets the project installed the
way the README's "beside a real vLLM" path does it. The venv with the dependencies is kept in
pytest's cache, keyed by pyproject.toml, so only the first run pays for resolving them; every run
reinstalls the package itself from this tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import SUBCOMMAND_MODULES
from sidecar.samples.cli import NEEDS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _pip(venv: Path, *args: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
        check=True,
        timeout=900,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def base_venv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding ``pip install .`` from this tree and nothing else."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = Path(request.config.cache.mkdir(f"base-install-{key}")) / "venv"
    if not (venv / "bin" / "vllm-sidecar").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        _pip(venv, ".")
    else:
        _pip(venv, "--no-deps", "--force-reinstall", ".")
    return venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return subprocess.run(
        [str(venv / "bin" / "vllm-sidecar"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=venv,
        check=False,
    )


def test_the_base_install_has_no_review_stack(base_venv: Path) -> None:
    """The premise: numpy and DuckDB are absent, so the checks below mean something."""
    probe = "import importlib.util as u; print([m for m in ('numpy', 'duckdb') if u.find_spec(m)])"
    out = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=base_venv,
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        *[[command, "--help"] for command in ["run", "check-config", *sorted(SUBCOMMAND_MODULES)]],
        *[["samples", command, "--help"] for command in sorted(NEEDS)],
    ],
    ids=" ".join,
)
def test_every_command_starts(base_venv: Path, args: list[str]) -> None:
    """Help and version print with exit 0 and no traceback."""
    result = _run(base_venv, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("command", sorted(name for name, modules in NEEDS.items() if modules))
def test_a_command_that_needs_the_review_extra_names_it(
    base_venv: Path, tmp_path: Path, command: str
) -> None:
    """One line naming the extra, exit 2: not a ModuleNotFoundError."""
    extra_args = {
        "query": ["SELECT 1"],
        "show": ["abc"],
        "export": [],
        "drift": ["--baseline", "last:7d", "--current", "last:1d"],
        "replay": ["--target", "http://127.0.0.1:9"],
        "compare": ["some-run"],
    }[command]
    result = _run(base_venv, "samples", command, "--source", str(tmp_path), *extra_args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"samples {command} needs: pip install 'vllm-sidecar[review]'" in lines[0]

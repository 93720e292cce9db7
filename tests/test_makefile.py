"""The Makefile on a newcomer's machine: sudo when not root, and a clear word about Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.recipe import as_user

ROOT = Path(__file__).resolve().parents[1]


def _make(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["make", "--no-print-directory", "-C", str(ROOT), *args]
    return subprocess.run(
        argv if user is None else as_user(user, argv),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
    )


def _fake_python(tmp_path: Path, *, version_ok: bool, has_venv: bool) -> Path:
    """A ``python`` that answers the two checks the Makefile makes, as a given system would."""
    script = tmp_path / "python-fake"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-V" ]; then echo "Python 3.10.12"; exit 0; fi\n'
        'case "$2" in\n'
        f"  *ensurepip*) exit {0 if has_venv else 1} ;;\n"
        f"  *version_info*) exit {0 if version_ok else 1} ;;\n"
        "esac\n"
        "exit 3\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_apt_get_goes_through_sudo_when_not_root() -> None:
    """As an ordinary user the package install is prefixed with sudo; as root it is not."""
    ordinary = _make("-n", "system-deps", user=4242)
    as_root = _make("-n", "system-deps")
    assert "sudo apt-get update" in ordinary.stdout
    assert "sudo apt-get" not in as_root.stdout
    assert "apt-get update" in as_root.stdout


def test_an_old_python_is_named_with_the_fix(tmp_path: Path) -> None:
    """Ubuntu 22.04's python3 is 3.10: make stops before creating anything and says what to do."""
    python = _fake_python(tmp_path, version_ok=False, has_venv=True)
    result = _make("demo", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}")
    assert result.returncode != 0
    assert "needs Python >= 3.11" in result.stdout
    assert "Python 3.10.12" in result.stdout
    assert "docs/install.md" in result.stdout
    assert not (tmp_path / "venv").exists()


def test_a_python_without_venv_support_names_the_package(tmp_path: Path) -> None:
    """Debian/Ubuntu's python3 without python3-venv: the message names the package."""
    python = _fake_python(tmp_path, version_ok=True, has_venv=False)
    result = _make("demo", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}")
    assert result.returncode != 0
    assert "apt-get install python3-venv" in result.stdout

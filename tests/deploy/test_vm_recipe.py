"""The single-VM recipe: its configs pass the real tools, and compose finds every file it names."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sidecar.config import load
from sidecar.proxy.keys import load_key_ring, load_upstream_key
from tests.deploy.chart import ROOT
from tests.deploy.recipe import (
    RECIPE,
    SETUP_OUTPUTS,
    as_user,
    compose,
    container_view,
    prepare,
    referenced_files,
    run,
    run_setup,
)

SIDECAR_UID = 10001


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of deploy/vm prepared by its own setup.sh."""
    return prepare(tmp_path_factory.mktemp("vm"))


def test_compose_needs_only_repository_files_and_setup_outputs() -> None:
    """Every file compose.yaml mounts ships in the repository, except what setup.sh writes."""
    missing = {
        label: path
        for label, path in referenced_files(compose(), RECIPE).items()
        if not path.exists()
    }
    from_setup = {
        label: path
        for label, path in missing.items()
        if str(path.relative_to(RECIPE)).startswith(SETUP_OUTPUTS)
    }
    assert missing == from_setup, f"compose.yaml names files nobody provides: {missing}"
    assert from_setup, "the secrets come from setup.sh, not from the repository"


def test_after_setup_every_referenced_file_exists(recipe: Path) -> None:
    """Once setup.sh has run, nothing compose.yaml names is missing."""
    missing = [
        label for label, path in referenced_files(compose(), recipe).items() if not path.exists()
    ]
    assert missing == []


def test_compose_cli_accepts_the_file(recipe: Path) -> None:
    """docker-compose parses and validates the file against the compose schema (no engine)."""
    cli = shutil.which("docker-compose")
    assert cli, "docker-compose (Debian package docker-compose) is needed for this check"
    compose_file = str(recipe / "compose.yaml")
    result = run([cli, "--project-directory", str(recipe), "-f", compose_file, "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_compose_wiring_is_consistent() -> None:
    """Services reach each other by the names the configs use; only nginx is public."""
    data = compose()
    services = data["services"]
    public = {
        name
        for name, service in services.items()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    }
    assert public == {"nginx"}
    assert "ports" not in services["vllm"]
    env = services["sidecar"]["environment"]
    assert urlsplit(env["VLLM_SIDECAR_UPSTREAM"]).hostname == "vllm"
    assert urlsplit(env["VLLM_SIDECAR_ALERTMANAGER_URL"]).hostname == "alertmanager"
    prometheus = yaml.safe_load((RECIPE / "prometheus/prometheus.yml").read_text("utf-8"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in prometheus["scrape_configs"]
    }
    assert targets["vllm"] == "vllm:8000"
    assert targets["vllm-sidecar"] == "sidecar:9400"
    assert services["sidecar"]["depends_on"] == ["vllm"], "compose stops the sidecar first"
    assert services["sidecar"]["read_only"] is True


def test_sidecar_settings_load(recipe: Path) -> None:
    """config.yaml plus the compose environment are valid settings for the sidecar."""
    env = compose()["services"]["sidecar"]["environment"]
    flags: dict[str, Any] = {
        key.removeprefix("VLLM_SIDECAR_").lower(): value
        for key, value in env.items()
        if key != "VLLM_SIDECAR_CONFIG"
    }
    flags["pod_name"] = "vm-1"
    settings = load(recipe / "sidecar/config.yaml", **flags)
    assert settings.upstream == "http://vllm:8000"
    assert settings.shutdown_grace_seconds < 40, "compose's stop_grace_period is 40s"


def test_prometheus_config_passes_promtool(recipe: Path, tmp_path: Path) -> None:
    """promtool check config passes, with the rule pack found where compose mounts it."""
    root = container_view(recipe, "prometheus", tmp_path)
    result = run(["promtool", "check", "config", str(root / "etc/prometheus/prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    assert "vllm-sidecar.rules.yaml" in result.stdout


def test_alertmanager_config_passes_amtool(recipe: Path, tmp_path: Path) -> None:
    """amtool check-config passes on the Alertmanager config compose mounts."""
    root = container_view(recipe, "alertmanager", tmp_path)
    config = root / "etc/alertmanager/alertmanager.yml"
    result = run(["amtool", "check-config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    slack = yaml.safe_load(config.read_text("utf-8"))["receivers"][1]["slack_configs"][0]
    assert (root / slack["api_url_file"].lstrip("/")).is_file()


def test_nginx_config_passes_nginx_t(recipe: Path, tmp_path: Path) -> None:
    """nginx -t passes with the certificate setup.sh made, at the paths compose mounts."""
    root = container_view(recipe, "nginx", tmp_path / "root")
    conf = root / "etc/nginx/nginx.conf"
    # The container's /tmp is a tmpfs; here the scratch directory stands in for it.
    scratch = tmp_path / "run"
    scratch.mkdir()
    conf.write_text(conf.read_text("utf-8").replace(" /tmp/", f" {scratch}/"), "utf-8")
    result = run(["nginx", "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)])
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_catches_a_missing_certificate(recipe: Path, tmp_path: Path) -> None:
    """The nginx check is real: without the certificate, nginx -t fails."""
    root = container_view(recipe, "nginx", tmp_path / "root")
    conf = root / "etc/nginx/nginx.conf"
    conf.write_text(conf.read_text("utf-8").replace(" /tmp/", f" {tmp_path}/"), "utf-8")
    (root / "etc/nginx/tls/fullchain.pem").unlink()
    result = run(["nginx", "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)])
    assert result.returncode != 0
    assert "fullchain.pem" in result.stderr


def test_grafana_provisioning_matches_the_dashboards(recipe: Path, tmp_path: Path) -> None:
    """Grafana gets the dashboards' provider, their JSON at its path, and the same datasource."""
    root = container_view(recipe, "grafana", tmp_path)
    provider = yaml.safe_load(
        (root / "etc/grafana/provisioning/dashboards/vllm-sidecar.yaml").read_text("utf-8")
    )
    path = root / provider["providers"][0]["options"]["path"].lstrip("/")
    assert sorted(p.name for p in path.glob("*.json")) == sorted(
        p.name for p in (ROOT / "dashboards/json").glob("*.json")
    )
    ours = yaml.safe_load(
        (root / "etc/grafana/provisioning/datasources/prometheus.yaml").read_text("utf-8")
    )
    theirs = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/vllm-sidecar.yaml").read_text("utf-8")
    )
    (ours_ds,), (theirs_ds,) = ours["datasources"], theirs["datasources"]
    assert urlsplit(ours_ds.pop("url")).hostname == "prometheus"
    theirs_ds.pop("url")
    assert ours_ds == theirs_ds
    prometheus = yaml.safe_load((RECIPE / "prometheus/prometheus.yml").read_text("utf-8"))
    assert ours_ds["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def test_setup_writes_usable_private_secrets(recipe: Path) -> None:
    """setup.sh's keys load in the sidecar, and only the container user that needs one reads it."""
    secrets = recipe / "secrets"
    ring = load_key_ring(secrets / "sidecar-api-keys.yaml")
    assert ring is not None
    assert ring.names == ("default",)
    upstream = load_upstream_key(secrets / "vllm-api-key")
    assert f"VLLM_API_KEY={upstream}\n" in (secrets / "vllm.env").read_text("utf-8")
    for name in ("sidecar-api-keys.yaml", "vllm-api-key"):
        info = (secrets / name).stat()
        assert info.st_uid == SIDECAR_UID
        assert stat.S_IMODE(info.st_mode) == 0o400
    assert stat.S_IMODE((recipe / "tls/privkey.pem").stat().st_mode) == 0o600
    assert "PUBLIC_HOST=llm.example.test" in (recipe / ".env").read_text("utf-8")


def test_setup_is_idempotent_and_refuses_non_root(recipe: Path) -> None:
    """A second run keeps every file; a non-root run stops with a message saying why."""
    secrets = recipe / "secrets"
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    again = run_setup(recipe)
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    refused = run_setup(recipe, user=65534)
    assert refused.returncode == 1
    assert "run as root" in refused.stderr


def test_compose_runs_as_the_user_who_ran_sudo(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``sudo ./setup.sh`` then ``docker compose`` as that user: compose reads .env and vllm.env.

    The files compose itself reads used to be root's 0600 (PermissionError: './.env').
    """
    cli = shutil.which("docker-compose")
    assert cli, "docker-compose (Debian package docker-compose) is needed for this check"
    scratch = Path(tempfile.mkdtemp(prefix="vm-user-"))
    try:
        scratch.chmod(0o755)  # the unprivileged user must reach the copy
        user = 4242
        recipe = prepare(scratch, env={"SUDO_UID": str(user), "SUDO_GID": str(user)})
        for name in (".env", "secrets/vllm.env"):
            assert (recipe / name).stat().st_uid == user
        assert (recipe / "secrets/vllm-api-key").stat().st_uid == SIDECAR_UID
        argv = [cli, "--project-directory", str(recipe), "-f", str(recipe / "compose.yaml")]
        result = subprocess.run(
            as_user(user, [*argv, "config"]),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        )
        assert result.returncode == 0, result.stderr
        assert "PUBLIC_HOST" not in result.stderr
        assert "llm.example.test" in result.stdout, "compose read .env as that user"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_setup_repairs_files_an_older_version_wrote_as_root(recipe: Path) -> None:
    """A rerun keeps the content of .env but hands it to the compose user."""
    env_file = recipe / ".env"
    content = env_file.read_bytes()
    os.chown(env_file, 0, 0)
    env_file.chmod(0o600)
    result = run_setup(recipe, env={"SUDO_UID": "4243", "SUDO_GID": "4243"})
    assert result.returncode == 0, result.stderr
    assert env_file.stat().st_uid == 4243
    assert env_file.read_bytes() == content
    run_setup(recipe)  # back to root for the other tests of this module


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong once ExecStart points at an installed script."""
    script = shutil.which("vllm-sidecar") or str(ROOT / ".venv/bin/vllm-sidecar")
    assert Path(script).is_file()
    text = (RECIPE / "systemd/vllm-sidecar.service").read_text("utf-8")
    assert "ExecStart=/opt/vllm-sidecar/bin/vllm-sidecar run\n" in text
    unit = tmp_path / "vllm-sidecar.service"
    unit.write_text(text.replace("/opt/vllm-sidecar/bin/vllm-sidecar", script), "utf-8")
    result = run(["systemd-analyze", "verify", str(unit)])
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""
    broken = tmp_path / "broken" / "vllm-sidecar.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text("utf-8").replace("Type=exec", "Type=sometimes"), "utf-8")
    assert "Failed to parse service type" in run(["systemd-analyze", "verify", str(broken)]).stderr


def test_systemd_unit_is_hardened_and_outlasts_the_drain(tmp_path: Path) -> None:
    """The unit's exposure score is low, and it waits longer than the sidecar drains."""
    unit = tmp_path / "vllm-sidecar.service"
    shutil.copyfile(RECIPE / "systemd/vllm-sidecar.service", unit)
    result = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)])
    line = next(
        line for line in (result.stdout + result.stderr).splitlines() if "exposure level" in line
    )
    assert float(line.split(":")[1].split()[0]) <= 2.0, line
    timeout = next(
        int(line.split("=")[1].rstrip("s"))
        for line in unit.read_text("utf-8").splitlines()
        if line.startswith("TimeoutStopSec=")
    )
    assert timeout > load().shutdown_grace_seconds

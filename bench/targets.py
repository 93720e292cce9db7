"""The processes under test: the fake upstream, nginx and the sidecar variants.

Every process is started in its own session and stopped by its pid (SIGTERM, then SIGKILL),
so a crashed run leaves nothing behind but its temporary directory. Each target is the same
upstream seen through a different front:

* ``direct``: the upstream itself (the baseline the others add to);
* ``nginx``: Debian's nginx, ``proxy_buffering off``, upstream keep-alive, HTTP/1.1 upstream,
  ``worker_processes 1`` (one worker against one sidecar process: both get one event loop);
* ``sidecar``: ``vllm-sidecar run`` with every feature on: per-request metrics, 1% sampling to
  the local sink, scraping and alert evaluation every ``scrape_interval`` seconds (5, the
  default; alert evaluation's default is 15), uploads every 5 s (instead of 60 s) so the
  uploader works during the measurement;
* ``sidecar-sample-all``: the same with ``--sample-rate 1.0`` (the sampler's worst case);
* ``sidecar-s3-outage``: the same at 1% with an S3 bucket whose endpoint is a closed loopback
  port, so every upload fails and the spool grows for the whole run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.procstat import with_children

NGINX = "/usr/sbin/nginx"
CHAT_PATH = "/v1/chat/completions"
SIDECAR_VARIANTS = ("sidecar", "sidecar-sample-all", "sidecar-s3-outage")
ALL_TARGETS = ("direct", "nginx", *SIDECAR_VARIANTS)
DEFAULT_TARGETS = ALL_TARGETS


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Block until 127.0.0.1:port accepts; fail with the process's log if it died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@dataclass(slots=True)
class Target:
    """One front to the upstream, as the load client sees it."""

    name: str
    url: str
    pids: list[int] = field(default_factory=list)
    """Processes whose CPU and memory count for this target (empty for ``direct``)."""
    admin_url: str | None = None
    workdir: Path | None = None


@dataclass(slots=True)
class Settings:
    """What the processes are started with."""

    scrape_interval: float = 5.0
    metrics_page: Path | None = None
    nginx: str = NGINX


class Fleet:
    """Starts the processes of one run and stops them all (by pid) at the end."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self._children: list[subprocess.Popen[bytes]] = []
        self.upstream_pids: list[int] = []
        self.upstream_url = ""

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def _start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            child = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**_clean_environment(), **(env or {})},
                cwd=self.root,
                start_new_session=True,
            )
        self._children.append(child)
        return child, log

    def start_upstream(self) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
        if self.settings.metrics_page is not None:
            argv += ["--metrics-page", str(self.settings.metrics_page)]
        child, log = self._start("upstream", argv, {"PYTHONPATH": _repo_root()})
        wait_for_port(port, child, log, 20.0)
        self.upstream_pids = [child.pid]
        self.upstream_url = f"http://127.0.0.1:{port}"

    def direct(self) -> Target:
        return Target("direct", self.upstream_url + CHAT_PATH)

    def start_nginx(self) -> Target:
        if not Path(self.settings.nginx).exists():
            raise FileNotFoundError(
                f"{self.settings.nginx} not found: install Debian's nginx-light "
                "(apt-get install nginx-light) or pass --nginx PATH"
            )
        port = free_port()
        prefix = self.root / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(self.upstream_url, port, prefix))
        argv = [
            self.settings.nginx,
            "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
            "-g", "daemon off; master_process on; worker_processes 1;",
        ]  # fmt: skip
        child, log = self._start("nginx", argv)
        wait_for_port(port, child, log, 20.0)
        return Target("nginx", f"http://127.0.0.1:{port}{CHAT_PATH}", pids=with_children(child.pid))

    def start_sidecar(self, variant: str) -> Target:
        port, admin = free_port(), free_port()
        workdir = self.root / variant
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "sidecar.cli", "run",
            "--upstream", self.upstream_url,
            "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}",
            "--samples-dir", str(workdir / "samples"),
            "--spool-dir", str(workdir / "spool"),
            "--scrape-interval", str(self.settings.scrape_interval),
            "--alert-evaluation-interval", str(self.settings.scrape_interval),
            "--upload-batch-max-seconds", "5",
            "--log-format", "json",
            "--sample-rate", "1.0" if variant == "sidecar-sample-all" else "0.01",
        ]  # fmt: skip
        env = {"PYTHONPATH": _repo_root()}
        if variant == "sidecar-s3-outage":
            argv += [
                "--s3-bucket", "bench-samples",
                "--s3-region", "us-east-1",
                "--s3-endpoint-url", f"http://127.0.0.1:{free_port()}",  # nothing listens
                "--upload-retry-max-seconds", "5",
            ]  # fmt: skip
            env |= {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        child, log = self._start(variant, argv, env)
        wait_for_port(port, child, log, 30.0)
        wait_for_port(admin, child, log, 30.0)
        return Target(
            variant,
            f"http://127.0.0.1:{port}{CHAT_PATH}",
            pids=[child.pid],
            admin_url=f"http://127.0.0.1:{admin}",
            workdir=workdir,
        )

    def start(self, names: list[str]) -> list[Target]:
        """The upstream, then each named target in order."""
        self.start_upstream()
        targets = []
        for name in names:
            if name == "direct":
                targets.append(self.direct())
            elif name == "nginx":
                targets.append(self.start_nginx())
            elif name in SIDECAR_VARIANTS:
                targets.append(self.start_sidecar(name))
            else:
                raise ValueError(f"unknown target {name!r}; choose from {', '.join(ALL_TARGETS)}")
        return targets

    def stop_all(self) -> None:
        for child in reversed(self._children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in reversed(self._children):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)


def nginx_config(upstream_url: str, port: int, prefix: Path) -> str:
    """A reverse proxy for SSE as its docs advise: no buffering, keep-alive to the upstream."""
    upstream = upstream_url.removeprefix("http://")
    return f"""pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    upstream vllm {{
        server {upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://vllm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def _clean_environment() -> dict[str, str]:
    """The caller's environment without proxies or cloud credentials (all traffic is loopback)."""
    drop = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "AWS_", "VLLM_SIDECAR_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def admin_metrics(target: Target) -> str:
    """The sidecar's own ``/metrics`` page (empty for targets without an admin server)."""
    if target.admin_url is None:
        return ""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(target.admin_url + "/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def directory_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def have_nginx(path: str = NGINX) -> bool:
    return Path(path).exists() or shutil.which("nginx") is not None

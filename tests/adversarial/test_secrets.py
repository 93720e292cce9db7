"""Secrets: every secret a setting can carry stays out of every output, log line and metric."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support import Processes, free_port, wait_for_port

FAILED_DELIVERY = re.compile(
    r'^vllm_sidecar_alert_notifications_total\{outcome="failure"[^}]*\} [1-9]', re.MULTILINE
)
UPSTREAM_PASSWORD = "upstream-pw-5f1c9e"
ALERTMANAGER_PASSWORD = "alertmanager-pw-83d1aa"
WEBHOOK_PATH_TOKEN = "webhook-path-token-77ab21"
WEBHOOK_QUERY_TOKEN = "webhook-query-token-0c4e9d"
S3_PASSWORD = "s3-endpoint-pw-2b7f60"
INBOUND_KEY = "sk-inbound-key-4a8b0c6d2e"
UPSTREAM_KEY = "sk-upstream-key-9f3e1d7c5b"
SECRETS = [
    UPSTREAM_PASSWORD,
    ALERTMANAGER_PASSWORD,
    WEBHOOK_PATH_TOKEN,
    WEBHOOK_QUERY_TOKEN,
    S3_PASSWORD,
    INBOUND_KEY,
    UPSTREAM_KEY,
]


def secret_flags(tmp_path: Path, upstream_port: int) -> list[str]:
    """Every secret-bearing setting, set (the URLs point at closed ports)."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"team: {INBOUND_KEY}\n")
    keys.chmod(0o600)
    upstream_key = tmp_path / "vllm.key"
    upstream_key.write_text(UPSTREAM_KEY + "\n")
    upstream_key.chmod(0o600)
    closed = free_port()
    return [
        f"--upstream=http://vllm:{UPSTREAM_PASSWORD}@127.0.0.1:{upstream_port}",
        f"--alertmanager-url=http://am:{ALERTMANAGER_PASSWORD}@127.0.0.1:{closed}",
        f"--alert-webhook-url=http://127.0.0.1:{closed}/hooks/{WEBHOOK_PATH_TOKEN}"
        f"?token={WEBHOOK_QUERY_TOKEN}",
        f"--s3-endpoint-url=http://minio:{S3_PASSWORD}@127.0.0.1:{closed}",
        f"--api-keys-file={keys}",
        f"--upstream-api-key-file={upstream_key}",
    ]


def assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {leaked}"


def test_check_config_masks_every_secret(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", *secret_flags(tmp_path, 1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_no_secret("check-config", result.stdout + result.stderr)
    shown = json.loads(result.stdout)
    assert shown["upstream"] == "http://vllm:***@127.0.0.1:1"


async def test_a_running_sidecar_never_shows_a_configured_secret(
    tmp_path: Path, processes: Processes
) -> None:
    """Start-up log, failing scrapes, failing alert deliveries, proxied and refused requests,
    admin metrics and APIs: none of them carries a configured secret."""
    proxy_port, admin_port = free_port(), free_port()
    log = tmp_path / "sidecar.log"
    child = processes.sidecar(
        "run",
        *secret_flags(tmp_path, free_port()),  # vLLM down: scrapes and requests fail
        f"--listen=127.0.0.1:{proxy_port}",
        f"--admin-listen=127.0.0.1:{admin_port}",
        f"--spool-dir={tmp_path / 'spool'}",
        f"--samples-dir={tmp_path / 'samples'}",
        "--scrape-interval=0.5",
        "--alert-evaluation-interval=0.5",
        '--alert-for={"VLLMDown": 0}',
        "--log-level=debug",
        log=log,
    )
    await asyncio.to_thread(wait_for_port, admin_port)
    await asyncio.to_thread(wait_for_port, proxy_port)
    proxy = f"http://127.0.0.1:{proxy_port}"
    texts: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as http:
        for key in (INBOUND_KEY, "wrong"):
            async with http.post(
                f"{proxy}/v1/chat/completions",
                json={"model": "m", "messages": []},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                texts.append((f"proxy answer {response.status}", await response.text()))
        for _ in range(100):  # until the alert has fired and deliveries were tried
            async with http.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
                metrics = await response.text()
            if FAILED_DELIVERY.search(metrics):  # the series exists at 0 from the start
                break
            await asyncio.sleep(0.1)
        for path in ("/metrics", "/api/v1/signals", "/api/v1/alerts", "/readyz"):
            async with http.get(f"http://127.0.0.1:{admin_port}{path}") as response:
                texts.append((path, await response.text()))
    os.kill(child.pid, signal.SIGTERM)
    await asyncio.to_thread(child.wait, 30)
    output = log.read_text()
    assert "sidecar_started" in output
    assert "alert_notification_failed" in output or "notification" in output
    texts.append(("log", output))
    for where, text in texts:
        assert_no_secret(where, text)

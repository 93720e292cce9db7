"""The sidecar's one settings object.

Sources, strongest first: command-line flags, ``VLLM_SIDECAR_*`` environment variables, the YAML
file given by ``--config`` (or ``VLLM_SIDECAR_CONFIG``), then the defaults below. Keys are flat
(``scrape_interval`` in YAML, ``VLLM_SIDECAR_SCRAPE_INTERVAL`` in the environment,
``--scrape-interval`` on the command line) so each setting has exactly one name everywhere.

The object is frozen and passed explicitly to every part; nothing reads the environment later.
Secrets (API keys) are never held here: only the *paths* of files that contain them.

A plain frozen dataclass, checked by :mod:`sidecar.settings_schema`: the declarations below (type,
default, bounds, description) are the single source for validation, the CLI flags, the Helm
values schema and the docs. Not pydantic, because importing it costs the long-lived ``run``
process ~10 MB of its ~50 MB.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from sidecar.settings_schema import (
    ConfigError,
    SettingField,
    check_fields,
    load_yaml_file,
    setting,
    setting_fields,
)

__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "load", "split_host_port"]

ENV_PREFIX = "VLLM_SIDECAR_"
MIN_PROBE_INTERVAL = 1.0
"""Shortest active-probe schedule: each probe costs vLLM a prefill and a batch slot."""


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        msg = f"expected HOST:PORT with a port 0-65535, got {value!r}"
        raise ValueError(msg)
    if not host:
        msg = f"expected HOST:PORT with a host, got {value!r}"
        raise ValueError(msg)
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        # Suggest the scheme only for a bare host:port; "http://ftp://x" helps nobody.
        example = value if value and "://" not in value else "host:8000"
        msg = f"expected an http(s) URL such as http://{example}, got {value!r}"
        raise ValueError(msg)
    try:
        _ = parts.port
    except ValueError as exc:
        msg = f"bad port in URL {value!r}"
        raise ValueError(msg) from exc
    return value.rstrip("/")


def _check_plain_path(value: str) -> str:
    if "?" in value or "#" in value:
        msg = "must be a plain path"
        raise ValueError(msg)
    return value


def _check_rates(value: dict[str, float]) -> dict[str, float]:
    for model, rate in value.items():
        if not 0 <= rate <= 1:
            msg = f"rate for model {model!r} must be between 0 and 1, got {rate}"
            raise ValueError(msg)
    return value


def _check_patterns(value: list[str]) -> list[str]:
    from sidecar.sampling.patterns import compile_user_pattern

    for pattern in value:
        try:
            compile_user_pattern(pattern)
        except ValueError as exc:
            msg = f"pattern {pattern!r} does not compile: {exc}"
            raise ValueError(msg) from exc
    return value


HostPort = Annotated[str, _check_host_port]
HttpUrl = Annotated[str, _check_http_url]
MetricsPath = Annotated[str, _check_plain_path]
Rates = Annotated[dict[str, float], _check_rates]
Patterns = Annotated[list[str], _check_patterns]


def split_host_port(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ``("0.0.0.0", 8080)``; IPv6 hosts may be bracketed."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of ``vllm-sidecar run`` (and the parts it starts).

    Constructing one coerces and checks every value (strings from flags and the environment
    become numbers, booleans and paths) and raises :class:`ConfigError` naming the field.
    """

    # --- where things are -------------------------------------------------------------------
    upstream: HttpUrl = setting(
        default="http://127.0.0.1:8000", description="vLLM's base URL (its /metrics and /v1)."
    )
    listen: HostPort = setting(default="0.0.0.0:8080", description="The proxy's address.")
    admin_listen: HostPort = setting(
        default="0.0.0.0:9400", description="Admin server: /metrics, /healthz, /readyz, /api."
    )
    proxy_enabled: bool = setting(default=True, description="Serve the OpenAI pass-through.")

    # --- scraping ---------------------------------------------------------------------------
    scrape_interval: float = setting(
        default=5.0, ge=0.1, le=3600, description="How often to scrape vLLM's /metrics."
    )
    scrape_timeout: float = setting(
        default=5.0, ge=0.05, le=3600, description="Give up on one scrape after this long."
    )
    metrics_path: MetricsPath = setting(
        default="/metrics", pattern=r"^/", description="Path of vLLM's metrics page."
    )
    history_seconds: float = setting(
        default=900.0,
        ge=300,
        le=86400,
        description="How much scrape history to keep for windows and trends.",
    )
    min_requests_for_ratio: float = setting(
        default=20.0,
        ge=0,
        description="Traffic floor: a ratio over fewer requests in its window is not reported.",
    )
    probe_interval: float = setting(
        default=0.0,
        ge=0,
        le=3600,
        description="Seconds between active probes (a 1-token completion to vLLM); 0 = off, "
        "else at least 1.",
    )
    probe_timeout: float = setting(default=10.0, gt=0, le=600, description="Seconds.")

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        default="info", description="Least severe log level written."
    )
    log_format: Literal["auto", "json", "console"] = setting(
        default="auto", description="auto = console on a TTY, JSON otherwise."
    )

    # --- proxy ------------------------------------------------------------------------------
    max_body_bytes: int = setting(default=16 * 1024 * 1024, gt=0, description="Request bodies.")
    upstream_connect_timeout: float = setting(
        default=5.0,
        ge=0.01,
        le=3600,
        description="Connecting to vLLM; past it the client gets a 502.",
    )
    upstream_read_timeout: float = setting(
        default=600.0, ge=0.05, le=86400, description="Longest silence from vLLM before a 504."
    )
    upstream_max_connections: int = setting(
        default=1000, ge=1, description="Open connections to vLLM at most (the proxy's pool)."
    )
    max_bodies_in_flight_bytes: int = setting(
        default=128 * 1024 * 1024,
        ge=1024,
        description="Budget: request-body bytes held at once by all requests together; past it "
        "a request gets 503 (bounds memory under many concurrent uploads).",
    )
    max_client_connections: int = setting(
        default=4096,
        ge=1,
        description="Budget: open client connections to the proxy; past it a new connection gets "
        "503 and is closed. Also capped by the open-file limit, so the admin server and vLLM "
        "connections always have descriptors left.",
    )
    client_header_timeout: float = setting(
        default=10.0,
        ge=0.5,
        le=3600,
        description="Seconds a new client connection may take to send a whole request head "
        "(slowloris); then it is closed.",
    )
    client_body_timeout: float = setting(
        default=30.0,
        ge=0.5,
        le=3600,
        description="Longest silence while a request body arrives; then 408 (a client cannot "
        "hold its share of the body budget without sending).",
    )
    client_idle_timeout: float = setting(
        default=75.0,
        ge=0.5,
        le=86400,
        description="Seconds an idle keep-alive client connection is kept open.",
    )
    upstream_max_trailer_bytes: int = setting(
        default=16 * 1024,
        ge=256,
        description="Largest chunked trailer accepted from vLLM; more breaks off the response.",
    )
    api_keys_file: Path | None = setting(
        default=None,
        description="YAML/JSON mapping key name -> key; inbound requests must carry one.",
    )
    upstream_api_key_file: Path | None = setting(
        default=None, description="File holding vLLM's --api-key; sent upstream by the proxy."
    )
    allow_insecure_keys: bool = setting(
        default=False,
        description="Accept key files that others may write and inbound keys shorter than 16 "
        "characters (each logged as a warning) instead of refusing to start.",
    )
    shutdown_grace_seconds: float = setting(
        default=25.0,
        ge=0,
        le=3600,
        description="On SIGTERM: time for streams in flight to finish and samples to upload.",
    )

    # --- sampling ---------------------------------------------------------------------------
    sample_rate: float = setting(
        default=0.01, ge=0, le=1, description="Share of requests recorded (0.01 = 1%)."
    )
    sample_rate_overrides: Rates = setting(factory=dict, description="model name -> sample rate.")
    sample_keep_errors: bool = setting(
        default=True, description="Also keep failed requests (within the keep budget)."
    )
    sample_keep_length: bool = setting(
        default=True, description="Also keep answers cut off by max_tokens (finish 'length')."
    )
    sample_keep_slow_seconds: float | None = setting(
        default=30.0, gt=0, description="Also keep requests slower than this."
    )
    sample_key_file: Path | None = setting(
        default=None,
        description="File holding the secret that keys the sample decision (give every replica "
        "the same one); unset: generated once under spool_dir.",
    )
    sample_keep_budget_per_minute: int = setting(
        default=60, ge=0, description="Cap on records kept by keep-rules, per minute."
    )
    redact_patterns: Patterns = setting(
        factory=list, description="Extra regular expressions to redact."
    )
    deployment: str = setting(default="", description="Label such as 'blue' or 'green'.")
    pod_name: str = setting(
        factory=lambda: os.environ.get("HOSTNAME", "") or "local",
        description="Written into each record and object key.",
    )
    samples_dir: Path = setting(
        default=Path("./samples-data"), description="The embedded sink when no bucket is set."
    )
    spool_dir: Path = setting(default=Path("./spool"), description="On-disk spool of records.")
    spool_max_bytes: int = setting(
        default=256 * 1024 * 1024, gt=0, description="Disk the spool may use before dropping."
    )
    spool_when_full: Literal["drop_newest", "drop_oldest"] = setting(
        default="drop_newest", description="Which records a full spool gives up."
    )
    upload_batch_max_records: int = setting(
        default=500, ge=1, description="Records per uploaded object at most."
    )
    upload_batch_max_seconds: float = setting(
        default=60.0, ge=0.05, le=86400, description="Upload a partial batch once it is this old."
    )
    upload_retry_initial_seconds: float = setting(
        default=1.0, ge=0.01, le=3600, description="First retry delay while the sink fails."
    )
    upload_retry_max_seconds: float = setting(
        default=30.0, ge=0.01, le=3600, description="Cap of the jittered exponential retry delay."
    )
    sample_max_response_bytes: int = setting(
        default=4 * 1024 * 1024,
        gt=0,
        description="Response bytes kept per request for the sampler; past it only the first "
        "ones are (the record says truncated). Bounds memory under long streams.",
    )
    sample_queue_max_records: int = setting(
        default=1000, ge=1, description="Kept exchanges waiting in memory to be spooled."
    )
    sample_build_timeout_seconds: float = setting(
        default=30.0,
        gt=0,
        description="Longest the record-building child may take over one batch before it is "
        "replaced (the batch is dropped and counted).",
    )
    sample_memory_max_bytes: int = setting(
        default=64 * 1024 * 1024,
        ge=0,
        description="One byte budget for everything held in memory for the sampler: response "
        "bytes kept by requests in flight and queued exchanges.",
    )
    s3_bucket: str | None = setting(
        default=None, description="Bucket for samples; without one they go to samples_dir."
    )
    s3_prefix: str = setting(default="vllm-samples", description="Key prefix in the bucket.")
    s3_region: str | None = setting(
        default=None, description="Region of the bucket (none: boto3's chain decides)."
    )
    s3_endpoint_url: HttpUrl | None = setting(
        default=None, description="S3-compatible endpoint (MinIO, R2); default AWS."
    )
    s3_sse: Literal["", "AES256", "aws:kms"] = setting(
        default="", description="Server-side encryption of uploaded objects ('' = bucket default)."
    )
    s3_kms_key_id: str | None = setting(default=None, description="KMS key for s3_sse aws:kms.")
    s3_storage_class: str | None = setting(
        default=None, description="Storage class of uploaded objects (e.g. STANDARD_IA)."
    )

    # --- alerting ---------------------------------------------------------------------------
    alertmanager_url: HttpUrl | None = setting(
        default=None, description="Alertmanager base URL; alerts go to /api/v2/alerts."
    )
    alert_webhook_url: HttpUrl | None = setting(
        default=None, description="Also POST alerts (Alertmanager's webhook JSON) here."
    )
    alert_evaluation_interval: float = setting(
        default=15.0,
        ge=0.01,
        le=3600,
        description="How often the in-process engine evaluates alerts.",
    )
    alert_resend_interval: float = setting(
        default=60.0, ge=0.05, le=86400, description="Resend firing alerts this often."
    )
    alert_thresholds: dict[str, float] = setting(
        factory=dict, description="alert name -> threshold override."
    )
    alert_for: dict[str, float] = setting(
        factory=dict, duration=True, description="alert name -> 'for' override (300 or '5m')."
    )
    slo_ttft_seconds: float = setting(
        default=0.5, gt=0, description="SLO: time to first token within this..."
    )
    slo_e2e_seconds: float = setting(
        default=20.0, gt=0, description="SLO: whole request within this..."
    )
    slo_target: float = setting(
        default=0.99, gt=0, lt=1, description="...for this share of requests."
    )
    external_labels: dict[str, str] = setting(
        factory=dict, description="Labels added to every alert the sidecar sends."
    )
    alert_runbook_url: HttpUrl = setting(
        default="https://github.com/vllm-sidecar/vllm-sidecar/blob/main/alerts/runbooks.md",
        description="Runbook document; each alert's runbook_url is this plus #<alertname>.",
    )

    def __post_init__(self) -> None:
        for name, value in check_fields(self, setting_fields(Settings)).items():
            object.__setattr__(self, name, value)
        if self.s3_sse == "aws:kms" and not self.s3_kms_key_id:
            raise ConfigError("s3_kms_key_id: s3_sse 'aws:kms' needs s3_kms_key_id")
        if 0 < self.probe_interval < MIN_PROBE_INTERVAL:
            # every probe is a real completion: a tiny interval would load vLLM, not watch it
            raise ConfigError(
                f"probe_interval: 0 (off) or at least {MIN_PROBE_INTERVAL:g}s "
                f"(got {self.probe_interval:g})"
            )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (checked like any other construction)."""
        return replace(self, **changes)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain JSON data, with anything secret masked: secret-named
        settings, passwords and query values in every URL, a webhook URL's path (its token)."""
        from sidecar.masking import mask_url

        data = {key: _plain(value) for key, value in asdict(self).items()}
        for key, value in list(data.items()):
            if value and any(word in key for word in ("password", "secret", "token")):
                data[key] = "***"
            elif isinstance(value, str) and value and (key.endswith("_url") or key == "upstream"):
                data[key] = mask_url(value, keep_path=key != "alert_webhook_url")
        return data


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def fields_of_settings() -> Mapping[str, SettingField]:
    """Every setting's declaration (type, default, bounds, description), in declaration order."""
    return setting_fields(Settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    data = load_yaml_file(path, "config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of setting names to values")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _from_environment(known: Mapping[str, SettingField]) -> dict[str, Any]:
    """``VLLM_SIDECAR_<NAME>`` variables (any case); structured settings are JSON there."""
    found: dict[str, Any] = {}
    for key, raw in os.environ.items():
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper == f"{ENV_PREFIX}CONFIG":
            continue
        name = upper[len(ENV_PREFIX) :].lower()
        declared = known.get(name)
        if declared is not None:
            found[name] = declared.from_text(raw)
            continue
        # Others are not ours to judge (Kubernetes' service links for a Service named
        # vllm-sidecar: VLLM_SIDECAR_PORT, ..._SERVICE_HOST), but a near miss is a typo that
        # would silently leave a default in force.
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
        if close:
            raise ConfigError(
                f"{key}: unknown setting; did you mean {ENV_PREFIX}{close[0].upper()}?"
            )
    return found


def load(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build the settings from flags > environment > YAML file > defaults.

    Flags given as ``None`` are treated as not given. Raises :class:`ConfigError` with one line
    naming the bad field.
    """
    known = fields_of_settings()
    explicit = {key: value for key, value in flags.items() if value is not None}
    path = config_file or (
        Path(os.environ[f"{ENV_PREFIX}CONFIG"]) if os.environ.get(f"{ENV_PREFIX}CONFIG") else None
    )
    merged = _read_yaml(path) if path else {}
    merged.update(_from_environment(known))
    merged.update(explicit)
    for name in merged:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{name}: unknown setting{hint}")
    return Settings(**merged)

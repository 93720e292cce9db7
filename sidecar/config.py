"""The sidecar's one settings object.

Sources, strongest first: command-line flags, ``VLLM_SIDECAR_*`` environment variables, the YAML
file given by ``--config`` (or ``VLLM_SIDECAR_CONFIG``), then the defaults below. Keys are flat
(``scrape_interval`` in YAML, ``VLLM_SIDECAR_SCRAPE_INTERVAL`` in the environment,
``--scrape-interval`` on the command line) so each setting has exactly one name everywhere.

The object is frozen and passed explicitly to every part; nothing reads the environment later.
Secrets (API keys) are never held here: only the *paths* of files that contain them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "VLLM_SIDECAR_"


class ConfigError(ValueError):
    """An invalid setting, with a one-line message that names the field."""


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
        msg = f"expected an http(s) URL, got {value!r}"
        raise ValueError(msg)
    try:
        _ = parts.port
    except ValueError as exc:
        msg = f"bad port in URL {value!r}"
        raise ValueError(msg) from exc
    return value.rstrip("/")


HostPort = Annotated[str, AfterValidator(_check_host_port)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]


def split_host_port(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ``("0.0.0.0", 8080)``; IPv6 hosts may be bracketed."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class Settings(BaseSettings):
    """Every setting of ``vllm-sidecar run`` (and the parts it starts)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        env_nested_delimiter=None,
    )

    # --- where things are -------------------------------------------------------------------
    upstream: HttpUrl = Field(
        default="http://127.0.0.1:8000", description="vLLM's base URL (its /metrics and /v1)."
    )
    listen: HostPort = Field(default="0.0.0.0:8080", description="The proxy's address.")
    admin_listen: HostPort = Field(
        default="0.0.0.0:9400", description="Admin server: /metrics, /healthz, /readyz, /api."
    )
    proxy_enabled: bool = Field(default=True, description="Serve the OpenAI pass-through.")

    # --- scraping ---------------------------------------------------------------------------
    scrape_interval: float = Field(default=5.0, gt=0, le=3600, description="Seconds.")
    scrape_timeout: float = Field(default=5.0, gt=0, le=3600, description="Seconds.")
    metrics_path: str = Field(default="/metrics", pattern=r"^/")
    history_seconds: float = Field(
        default=900.0,
        ge=300,
        le=86400,
        description="How much scrape history to keep for windows and trends.",
    )
    min_requests_for_ratio: float = Field(
        default=20.0,
        ge=0,
        description="Traffic floor: a ratio over fewer requests in its window is not reported.",
    )

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto = console on a TTY, JSON otherwise."
    )

    # --- proxy ------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="Request bodies.")
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_read_timeout: float = Field(
        default=600.0, gt=0, description="Longest silence from vLLM before a 504."
    )
    upstream_max_connections: int = Field(default=1000, ge=1)
    api_keys_file: Path | None = Field(
        default=None,
        description="YAML/JSON mapping key name -> key; inbound requests must carry one.",
    )
    upstream_api_key_file: Path | None = Field(
        default=None, description="File holding vLLM's --api-key; sent upstream by the proxy."
    )
    shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)

    # --- sampling ---------------------------------------------------------------------------
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    sample_rate_overrides: dict[str, float] = Field(
        default_factory=dict, description="model name -> sample rate."
    )
    sample_keep_errors: bool = True
    sample_keep_length: bool = True
    sample_keep_slow_seconds: float | None = Field(default=30.0, gt=0)
    sample_keep_budget_per_minute: int = Field(
        default=60, ge=0, description="Cap on records kept by keep-rules, per minute."
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description="Extra regular expressions to redact."
    )
    deployment: str = Field(default="", description="Label such as 'blue' or 'green'.")
    pod_name: str = Field(
        default_factory=lambda: os.environ.get("HOSTNAME", "") or "local",
        description="Written into each record and object key.",
    )
    samples_dir: Path = Field(
        default=Path("./samples-data"), description="The embedded sink when no bucket is set."
    )
    spool_dir: Path = Field(default=Path("./spool"), description="On-disk spool of records.")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    spool_when_full: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    upload_batch_max_records: int = Field(default=500, ge=1)
    upload_batch_max_seconds: float = Field(default=60.0, gt=0)
    upload_retry_initial_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="First retry delay while the sink fails."
    )
    upload_retry_max_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Cap of the jittered exponential retry delay."
    )
    sample_queue_max_records: int = Field(
        default=1000, ge=1, description="Kept exchanges waiting in memory to be spooled."
    )
    sample_queue_max_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Bytes of kept exchanges waiting in memory."
    )
    s3_bucket: str | None = None
    s3_prefix: str = "vllm-samples"
    s3_region: str | None = None
    s3_endpoint_url: HttpUrl | None = None
    s3_sse: Literal["", "AES256", "aws:kms"] = ""
    s3_kms_key_id: str | None = None
    s3_storage_class: str | None = None

    # --- alerting ---------------------------------------------------------------------------
    alertmanager_url: HttpUrl | None = Field(
        default=None, description="Alertmanager base URL; alerts go to /api/v2/alerts."
    )
    alert_webhook_url: HttpUrl | None = None
    alert_evaluation_interval: float = Field(default=15.0, gt=0)
    alert_resend_interval: float = Field(default=60.0, gt=0)
    alert_thresholds: dict[str, float] = Field(
        default_factory=dict, description="alert name -> threshold override."
    )
    alert_for: dict[str, float] = Field(
        default_factory=dict, description="alert name -> 'for' override in seconds."
    )
    slo_ttft_seconds: float = Field(default=0.5, gt=0)
    slo_e2e_seconds: float = Field(default=20.0, gt=0)
    slo_target: float = Field(default=0.99, gt=0, lt=1)
    external_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every alert the sidecar sends."
    )
    alert_runbook_url: HttpUrl = Field(
        default="https://github.com/vllm-sidecar/vllm-sidecar/blob/main/alerts/runbooks.md",
        description="Runbook document; each alert's runbook_url is this plus #<alertname>.",
    )

    @field_validator("metrics_path")
    @classmethod
    def _no_query(cls, value: str) -> str:
        if "?" in value or "#" in value:
            msg = "metrics_path must be a plain path"
            raise ValueError(msg)
        return value

    @field_validator("sample_rate_overrides")
    @classmethod
    def _rates_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for model, rate in value.items():
            if not 0 <= rate <= 1:
                msg = f"rate for model {model!r} must be between 0 and 1, got {rate}"
                raise ValueError(msg)
        return value

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                msg = f"pattern {pattern!r} does not compile: {exc}"
                raise ValueError(msg) from exc
        return value

    @model_validator(mode="after")
    def _kms_needs_key(self) -> Settings:
        if self.s3_sse == "aws:kms" and not self.s3_kms_key_id:
            msg = "s3_sse 'aws:kms' needs s3_kms_key_id"
            raise ValueError(msg)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init kwargs) beat the environment; the YAML file is merged in by load()."""
        del dotenv_settings, file_secret_settings
        return (init_settings, env_settings)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with anything secret-looking masked."""
        data = self.model_dump(mode="json")
        for key, value in list(data.items()):
            if isinstance(value, SecretStr) or (
                value and any(word in key for word in ("password", "secret", "token"))
            ):
                data[key] = "***"
        return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of setting names to values")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "config"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or first["type"] == "missing" else f" (got {value!r})"
    return f"{field}: {message}{shown}"


def load(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build the settings from flags > environment > YAML file > defaults.

    Flags given as ``None`` are treated as not given. Raises :class:`ConfigError` with one line
    naming the bad field.
    """
    explicit = {key: value for key, value in flags.items() if value is not None}
    path = config_file or (
        Path(os.environ[f"{ENV_PREFIX}CONFIG"]) if os.environ.get(f"{ENV_PREFIX}CONFIG") else None
    )
    from_file = _read_yaml(path) if path else {}
    env_keys = {
        key[len(ENV_PREFIX) :].lower()
        for key in os.environ
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG"
    }
    # The environment beats the file: drop file keys that the environment sets.
    merged = {key: value for key, value in from_file.items() if key not in env_keys}
    merged.update(explicit)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None

"""vllm-sidecar: observability, alerting and completion sampling beside a vLLM server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vllm-sidecar")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

"""Commands that need an optional extra say so in one line instead of a traceback.

``pip install vllm-sidecar`` brings what ``run``, ``top``, ``demo``, ``emulate``, ``loadgen``,
``check-config`` and ``alert-rules`` need; the reviewer's tools (DuckDB, numpy, scipy,
matplotlib) come with the ``review`` extra. Modules are looked up, not imported, so the check
costs nothing on the base install.
"""

from __future__ import annotations

import importlib.util

EXIT_MISSING_EXTRA = 2


class MissingExtraError(RuntimeError):
    """A command needs modules of an extra that is not installed; the message says which."""

    def __init__(self, command: str, extra: str, missing: list[str]) -> None:
        super().__init__(
            f"{command} needs: pip install 'vllm-sidecar[{extra}]' (missing: {', '.join(missing)})"
        )


def require(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """Raise :class:`MissingExtraError` when any of ``modules`` cannot be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(command, extra, missing)

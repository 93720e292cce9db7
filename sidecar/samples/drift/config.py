"""Thresholds of ``drift``: when a difference counts, and when there is too little to say.

A signal is flagged only when both hold: its Holm-adjusted p-value is below ``alpha`` (so over all
signals together the chance of any false alarm on unchanged traffic stays below ``alpha``) *and*
its effect reaches the minimum (PSI for mixes; PSI and a relative move of the median or p90 for
distributions; an absolute change in share for proportions), so a huge sample does not flag a
change nobody would care about. Below ``min_samples`` effective observations in either window a
signal says "not enough data".
Values come from flags or a YAML file of the same (snake_case) names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sidecar.samples.prompts import DEFAULT_REFUSAL_OPENINGS, normalise_opening


class DriftConfigError(ValueError):
    """A threshold that makes no sense; the message names it."""


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """The thresholds (see module docstring)."""

    alpha: float = 0.05
    """Family-wise significance level across all signals (Holm)."""
    min_samples: int = 50
    """Smallest effective sample per window and signal that is judged at all."""
    min_psi: float = 0.1
    """Smallest PSI that counts for a distribution or a mix (0.1 moderate, 0.25 large)."""
    min_share_change: float = 0.01
    """Smallest absolute change of a share (0.01 = one percentage point) that counts."""
    min_relative_change: float = 0.1
    """Distributions also need their median or p90 to move by this fraction (0.1 = 10%):
    PSI is scale-free, so a 2 ms shift of a tight latency distribution can look large."""
    min_semantic_shift: float = 0.01
    """Semantic signals: smallest share of the embeddings' variance lying between the windows."""
    psi_bins: int = 10
    """Quantile bins of the baseline used for PSI."""
    refusal_openings: tuple[str, ...] = DEFAULT_REFUSAL_OPENINGS
    """Answer openings counted as refusals (case-insensitive)."""
    disabled_signals: tuple[str, ...] = ()
    """Signals to leave out (names as in the verdict table)."""

    def __post_init__(self) -> None:
        if not (0 < self.alpha < 1):
            raise DriftConfigError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.min_samples < 2:
            raise DriftConfigError(f"min_samples must be >= 2, got {self.min_samples}")
        if not (math.isfinite(self.min_psi) and self.min_psi >= 0):
            raise DriftConfigError(f"min_psi must be >= 0, got {self.min_psi}")
        if not (0 <= self.min_share_change < 1):
            raise DriftConfigError(
                f"min_share_change must be in [0, 1), got {self.min_share_change}"
            )
        if not (math.isfinite(self.min_relative_change) and self.min_relative_change >= 0):
            raise DriftConfigError(
                f"min_relative_change must be >= 0, got {self.min_relative_change}"
            )
        if not (2 <= self.psi_bins <= 100):
            raise DriftConfigError(f"psi_bins must be 2..100, got {self.psi_bins}")
        if not all(opening.strip() for opening in self.refusal_openings):
            raise DriftConfigError("refusal_openings must not contain empty phrases")

    def with_changes(self, **changes: Any) -> DriftConfig:
        """A copy with the given (non-None) fields changed, validated."""
        given = {key: value for key, value in changes.items() if value is not None}
        for name in (
            "alpha",
            "min_psi",
            "min_share_change",
            "min_relative_change",
            "min_semantic_shift",
        ):
            if name in given:
                given[name] = _number(name, given[name], float)
        for name in ("min_samples", "psi_bins"):
            if name in given:
                given[name] = _number(name, given[name], int)
        if "refusal_openings" in given:
            given["refusal_openings"] = tuple(
                normalise_opening(str(phrase)) for phrase in given["refusal_openings"]
            )
        if "disabled_signals" in given:
            given["disabled_signals"] = tuple(str(name) for name in given["disabled_signals"])
        try:
            return replace(self, **given)
        except TypeError as exc:
            raise DriftConfigError(str(exc)) from None


def _number(name: str, value: Any, kind: type[float] | type[int]) -> Any:
    if isinstance(value, bool):
        raise DriftConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise DriftConfigError(f"{name} must be a number, got {value!r}") from None
    if kind is int and number != float(value):
        raise DriftConfigError(f"{name} must be a whole number, got {value!r}")
    return number


def load_config_file(path: Path) -> DriftConfig:
    """Thresholds from a YAML mapping (unknown keys are an error)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise DriftConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise DriftConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DriftConfigError(f"{path} must hold a mapping of threshold names to values")
    known = {item.name for item in fields(DriftConfig)}
    unknown = sorted(str(key) for key in data if str(key).replace("-", "_") not in known)
    if unknown:
        raise DriftConfigError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    for name in ("refusal_openings", "disabled_signals"):
        if name in values and not isinstance(values[name], list):
            raise DriftConfigError(f"{path}: {name} must be a list")
    return DriftConfig().with_changes(**values)

"""Regenerate the committed dashboard JSON: ``python -m dashboards.generate [--out DIR] [--check]``.

Writes ``json/<name>.json`` (provisioning-ready) and ``grafana-com/<name>.json`` (import variant)
under ``--out`` (default: this directory). ``--check`` writes nothing and exits 1 listing every
file that differs from what the code generates, which is what CI and the drift test rely on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from grafana_foundation_sdk.models import dashboard as model

from dashboards import capacity, overview, sidecar_requests, slo
from dashboards.export import encode, grafana_com_variant, reencode

HERE = Path(__file__).resolve().parent

BOARDS: Mapping[str, Callable[[], model.Dashboard]] = MappingProxyType(
    {
        "vllm-overview": overview.build,
        "vllm-sidecar-requests": sidecar_requests.build,
        "vllm-capacity-cost": capacity.build,
        "vllm-slo-availability": slo.build,
    }
)
"""File stem -> builder. The stem is also the ConfigMap key the Helm chart uses."""


class UnstableEncodingError(RuntimeError):
    """The SDK would not load and re-encode a generated dashboard unchanged."""


def render() -> dict[str, str]:
    """Relative path -> file content, for every generated file."""
    files: dict[str, str] = {}
    for stem, build in BOARDS.items():
        text = encode(build())
        if reencode(text) != text:
            raise UnstableEncodingError(f"{stem}: the SDK model round trip changes the JSON")
        files[f"json/{stem}.json"] = text
        files[f"grafana-com/{stem}.json"] = encode(grafana_com_variant(json.loads(text)))
    return files


def drift(out: Path, files: Mapping[str, str]) -> list[str]:
    """Relative paths whose committed content differs from ``files`` (or that are stray)."""
    changed = [
        name
        for name, text in files.items()
        if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
    ]
    for folder in {name.split("/", 1)[0] for name in files}:
        for existing in sorted((out / folder).glob("*.json")):
            name = f"{folder}/{existing.name}"
            if name not in files:
                changed.append(name)
    return sorted(changed)


def write(out: Path, files: Mapping[str, str]) -> None:
    """Write every file, removing generated JSON that no builder produces any more."""
    for name in drift(out, files):
        target = out / name
        if name in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[name], encoding="utf-8")
        else:
            target.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="Output directory.")
    parser.add_argument("--check", action="store_true", help="Fail on drift; write nothing.")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = drift(args.out, files)
        for name in stale:
            print(f"dashboards: {name} is out of date; run python -m dashboards.generate")
        return 1 if stale else 0
    write(args.out, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())

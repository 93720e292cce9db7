"""The committed JSON is exactly what the generator writes, and the SDK's model accepts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboards import generate
from dashboards.export import reencode
from tests.dashboards.support import DASHBOARDS, IMPORT_VARIANTS, PROVISIONED

STEMS = sorted(generate.BOARDS)


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    """Generating into a fresh directory reproduces every committed file byte for byte."""
    assert generate.main(["--out", str(tmp_path)]) == 0
    for folder in ("json", "grafana-com"):
        fresh = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / folder).glob("*")}
        committed = {p.name: p.read_text(encoding="utf-8") for p in (DASHBOARDS / folder).glob("*")}
        assert sorted(fresh) == sorted(committed), folder
        for name, text in fresh.items():
            assert committed[name] == text, (
                f"{folder}/{name} drifted: run python -m dashboards.generate"
            )


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--check`` exits 1 and names an edited or stray file, and 0 on a clean tree."""
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0
    edited = tmp_path / "json" / f"{STEMS[0]}.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace('"30s"', '"5s"'), encoding="utf-8")
    (tmp_path / "grafana-com" / "stray.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"json/{STEMS[0]}.json" in out
    assert "grafana-com/stray.json" in out


def test_write_removes_stray_generated_files(tmp_path: Path) -> None:
    """A board that is no longer generated disappears on the next write."""
    (tmp_path / "json").mkdir()
    stray = tmp_path / "json" / "old-board.json"
    stray.write_text("{}", encoding="utf-8")
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert not stray.exists()
    assert sorted(p.stem for p in (tmp_path / "json").glob("*.json")) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_sdk_model_round_trip(stem: str) -> None:
    """Loading the committed JSON into the SDK's Dashboard model and re-encoding is lossless."""
    text = (PROVISIONED / f"{stem}.json").read_text(encoding="utf-8")
    assert reencode(text) == text


@pytest.mark.parametrize("stem", STEMS)
def test_import_variant_round_trips_apart_from_import_fields(stem: str) -> None:
    """The grafana.com variant is the same model plus ``__inputs``/``__requires``/``__elements``."""
    variant = json.loads((IMPORT_VARIANTS / f"{stem}.json").read_text(encoding="utf-8"))
    for key in ("__inputs", "__requires", "__elements"):
        variant.pop(key)
    text = json.dumps(variant, indent=2, sort_keys=True) + "\n"
    assert json.loads(reencode(text)) == variant


def test_sdk_is_the_pinned_grafana_11_build() -> None:
    """The generator runs on the SDK build for Grafana 11.6 (schemaVersion 41), not the 10.1 one."""
    from importlib.metadata import version

    assert version("grafana-foundation-sdk") == "1769699379!11.6.0"
    board = json.loads((PROVISIONED / f"{STEMS[0]}.json").read_text(encoding="utf-8"))
    assert board["schemaVersion"] == 41

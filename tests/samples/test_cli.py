"""The ``samples`` command line: bad input is one clear line and exit 2; results are exact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sidecar.cli import build_parser, main
from tests.samples.synthetic import Traffic, make_records, write_objects

BLUE_VS_ALL = ("--baseline", "all@deployment=blue", "--current", "all")


@pytest.fixture
def two_deployments(tmp_path: Path) -> Path:
    """Blue and green windows of 300 records each; green answers longer."""
    start = time.time() - 7200
    records = make_records(1, Traffic(), 300, start, 1800, tag="b")
    records += make_records(2, Traffic(deployment="green", tokens_mean=110), 300, start, 1800)
    write_objects(tmp_path / "samples", records)
    return tmp_path / "samples"


def _drift(source: Path, *extra: str) -> list[str]:
    return ["samples", "drift", "--source", str(source), "--report", "none", *extra]


def test_samples_is_registered_with_every_subcommand() -> None:
    """``vllm-sidecar samples`` offers pull, query, show, export and drift."""
    parser = build_parser()
    extra = {"query": ["SQL"], "show": ["ID"], "drift": ["--baseline", "a", "--current", "b"]}
    for name in ("pull", "query", "show", "export", "drift"):
        args = parser.parse_args(["samples", name, "--source", "x", *extra.get(name, [])])
        assert args.command_name == name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baseline", "last week", "--current", "all"], "expected A..B"),
        (["--baseline", "all@colour=red", "--current", "all"], "unknown pin"),
        (["--baseline", "all", "--current", "all"], "share records"),
        (["--baseline", "all@deployment=blue", "--current", "all", "--alpha", "2"], "alpha"),
        (
            ["--baseline", "all@deployment=blue", "--current", "all", "--min-samples", "1"],
            "min_samples",
        ),
        (["--baseline", "all@deployment=blue", "--current", "all", "--pull"], "needs an s3://"),
    ],
)
def test_drift_usage_errors_exit_2(
    extra: list[str], message: str, two_deployments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad ranges, pins, thresholds or flag combinations: exit 2 and say what is wrong."""
    assert main(_drift(two_deployments, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_drift_config_file_and_json_result(
    two_deployments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Thresholds from YAML (flags win), a disabled signal, and the JSON result for machines."""
    config = tmp_path / "drift.yaml"
    config.write_text("alpha: 0.01\nmin_samples: 100\ndisabled_signals: [ttft]\n")
    result = tmp_path / "result.json"
    argv = _drift(two_deployments, "--config", str(config), "--min-samples", "120")
    argv += ["--baseline", "all@deployment=blue", "--current", "all@deployment=green"]
    assert main([*argv, "--json", str(result)]) == 3
    data = json.loads(result.read_text())
    assert data["config"]["alpha"] == 0.01
    assert data["config"]["min_samples"] == 120
    names = {signal["name"]: signal for signal in data["signals"]}
    assert "ttft" not in names
    assert names["output_chars"]["status"] == "drift"
    assert names["errors"]["status"] == "ok"
    assert data["baseline"]["records"] == data["current"]["records"] == 300
    assert "DRIFT" in capsys.readouterr().out

    config.write_text("alpha: 0.01\nthreshold: 3\n")
    assert main(argv) == 2
    assert "unknown setting(s) ['threshold']" in capsys.readouterr().err


def test_s3_source_without_a_cache_says_how_to_pull(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Querying an S3 source that was never pulled is an empty view and a hint, not a crash."""
    argv = ["samples", "query", "--source", "s3://some-bucket/pfx", "--cache", str(tmp_path)]
    assert main([*argv, "--format", "csv", "SELECT count(*) AS n FROM samples"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["n", "0"]
    assert "vllm-sidecar samples pull --source s3://some-bucket/pfx" in captured.err

"""What a newcomer reads: help, one-line errors with a remedy, nothing left open or written unasked.

Every check runs the real console script in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.config import fields_of_settings
from sidecar.sampling.spool import Spool, SpoolLockedError

CLI = [sys.executable, "-m", "sidecar.cli"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def _option_help(text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from argparse's two-column layout."""
    found: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^  (--[a-z0-9-]+)(?:[ ,]|$)(.*)", line)
        if match:
            current = match.group(1)
            found[current] = match.group(2)
        elif current and line.startswith("   "):
            found[current] += " " + line.strip()
        else:
            current = ""
    return {flag: " ".join(help_text.split()) for flag, help_text in found.items()}


def test_run_help_groups_every_setting_with_text_default_and_metavar() -> None:
    """Every flag says what it does and its default; durations, URLs and choices are visible."""
    result = _cli("run", "--help")
    assert result.returncode == 0
    text = result.stdout
    for title in ("where things are:", "scraping:", "sampling:", "S3", "alerts and SLOs:"):
        assert title in text
    options = _option_help(text)
    for name in fields_of_settings():
        flag = "--" + name.replace("_", "-")
        assert flag in options, flag
        assert "(default: " in options[flag], f"{flag} shows no default: {options[flag]!r}"
    assert "--upstream URL" in text
    assert "http://127.0.0.1:8000" in options["--upstream"]
    assert "--spool-when-full {drop_newest,drop_oldest}" in text
    assert "--scrape-interval SECONDS" in text
    assert "--sample-rate RATE" in text
    assert "VALUE" not in text.replace("--SETTING VALUE", "")
    assert len(text.splitlines()[0]) < 100, "a one-line usage, not 40 lines of flags"


def test_check_config_rejects_what_run_rejects_and_nothing_is_left_open() -> None:
    """A misspelt alert name: both commands exit 2 with the same single line."""
    bad = ["--alert-thresholds", '{"VLLMKVCacheSaturaton": 0.9}', "--listen", "127.0.0.1:0"]
    checked = _cli("check-config", *bad)
    ran = _cli("run", *bad, "--admin-listen", "127.0.0.1:0")
    for result in (checked, ran):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "VLLMKVCacheSaturaton" in lines[0]
        assert "Unclosed" not in result.stderr
    assert checked.stderr == ran.stderr


def test_a_bad_url_is_named_once_with_the_fix() -> None:
    """No '(got ...)' repeated after a message that already shows the value."""
    result = _cli("check-config", "--upstream", "localhost:8000")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.count("'localhost:8000'") == 1, line
    assert "http://localhost:8000" in line


def test_an_unknown_setting_gets_a_did_you_mean(tmp_path: Path) -> None:
    """A typo in the YAML file names the setting it was probably meant to be."""
    config = tmp_path / "sidecar.yaml"
    config.write_text("scrape_intervall: 2\n", encoding="utf-8")
    result = _cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "did you mean scrape_interval?" in result.stderr


def test_durations_are_accepted_wherever_a_duration_is_set() -> None:
    """Prometheus durations in flags and in alert_for; plain seconds still work."""
    result = _cli(
        "check-config",
        "--scrape-interval",
        "2m",
        "--slo-ttft-seconds",
        "500ms",
        "--alert-for",
        '{"VLLMDown": "5m", "VLLMKVCacheSaturation": 90}',
    )
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["scrape_interval"] == 120
    assert settings["slo_ttft_seconds"] == 0.5
    assert settings["alert_for"] == {"VLLMDown": 300, "VLLMKVCacheSaturation": 90}
    bad = _cli("check-config", "--alert-for", '{"VLLMDown": "5 minutes"}')
    assert bad.returncode == 2
    assert "30s, 5m" in bad.stderr


def test_alert_rules_without_arguments_writes_nothing_into_the_working_directory(
    tmp_path: Path,
) -> None:
    """The rules go to stdout; files only with --out-dir."""
    result = _cli("alert-rules", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
    assert "alert: VLLMKVCacheSaturation" in result.stdout
    written = _cli("alert-rules", "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "alertmanager.example.yaml",
        "vllm-sidecar.rules.yaml",
    ]


def test_samples_help_is_plain_text_with_a_correct_query_example() -> None:
    """No reStructuredText markup; the example filters on model_name, not the slug column."""
    top = _cli("samples", "--help")
    query = _cli("samples", "query", "--help")
    assert top.returncode == query.returncode == 0
    assert "``" not in top.stdout
    assert "model_name" in top.stdout
    assert "SELECT model," not in query.stdout
    assert "model_name" in query.stdout


def test_an_empty_source_directory_is_called_empty(tmp_path: Path) -> None:
    """0 rows from an empty directory come with a line saying why."""
    result = _cli("samples", "export", "--source", str(tmp_path))
    assert f"{tmp_path.resolve()} is empty" in result.stderr


def test_a_locked_spool_names_its_absolute_path_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sidecars in one directory: the second is told where and what to change."""
    monkeypatch.chdir(tmp_path)
    first = Spool(Path("spool"), max_bytes=1 << 20)
    first.open()
    try:
        with pytest.raises(SpoolLockedError) as caught:
            Spool(Path("spool"), max_bytes=1 << 20).open()
    finally:
        first.close()
    message = str(caught.value)
    assert str(tmp_path / "spool") in message
    assert "--spool-dir" in message


def test_alert_rules_takes_the_runbook_base_url(tmp_path: Path) -> None:
    """--runbook-url sets every runbook_url of the rendered rules; a bad URL is one line."""
    result = _cli("alert-rules", "--runbook-url", "https://wiki.example/runbooks")
    assert result.returncode == 0, result.stderr
    links = re.findall(r"runbook_url: (\S+)", result.stdout)
    assert links
    assert all(link.startswith("https://wiki.example/runbooks#") for link in links)
    bad = _cli("alert-rules", "--runbook-url", "wiki/runbooks")
    assert bad.returncode == 2
    assert "alert_runbook_url" in bad.stderr


@pytest.mark.parametrize(
    ("argv", "attribute", "seconds"),
    [
        (["top", "--interval", "500ms"], "interval", 0.5),
        (["top", "--duration", "5m"], "duration", 300.0),
        (["demo", "--duration", "90s"], "duration", 90.0),
        (["demo", "--cycle", "2m"], "cycle", 120.0),
        (["loadgen", "--target", "http://127.0.0.1:1", "--duration", "1m"], "duration", 60.0),
        (["loadgen", "--target", "http://127.0.0.1:1", "--timeout", "2"], "timeout", 2.0),
    ],
)
def test_duration_flags_of_the_tools_take_prometheus_durations(
    argv: list[str], attribute: str, seconds: float
) -> None:
    """The same duration syntax as the settings, in every tool's time flags."""
    from sidecar.cli import build_parser

    args = build_parser(argv[0]).parse_args(argv)
    assert getattr(args, attribute) == seconds


def test_a_misspelt_flag_gets_a_did_you_mean() -> None:
    """Flags, like YAML keys, name the setting they were probably meant to be."""
    result = _cli("run", "--scrape-intervl", "3")
    assert result.returncode == 2
    assert "did you mean --scrape-interval?" in result.stderr
    nested = _cli(
        "samples", "drift", "--source", ".", "--baseline", "a", "--current", "b", "--alhpa", "1"
    )
    assert "did you mean --alpha?" in nested.stderr


@pytest.mark.parametrize("url", ["ftp://vllm:8000", "http://", "nope://x"])
def test_a_url_with_the_wrong_scheme_gets_a_sensible_example(url: str) -> None:
    """Only a bare host:port is offered back with http:// in front ("http://ftp://..." is not)."""
    result = _cli("check-config", "--upstream", url)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert f"http://{url}" not in line, line
    assert "such as http://host:8000" in line, line
    assert line.count(repr(url)) == 1, line


@pytest.mark.parametrize("value", ["-1s", "-5m", "-0.5"])
def test_a_negative_duration_is_named_as_a_bad_value(value: str) -> None:
    """argparse took '-1s' for an option ("expected one argument"): the value's check answers."""
    result = _cli("check-config", "--scrape-interval", value)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "expected one argument" not in line, line
    assert line.startswith("vllm-sidecar: invalid config: scrape_interval:"), line
    assert repr(value) in line, line


def test_a_misspelt_alert_name_gets_a_did_you_mean() -> None:
    """One close alert name, not a list of twenty to compare letter by letter."""
    for flag, value in (("--alert-thresholds", "0.9"), ("--alert-for", '"5m"')):
        result = _cli("check-config", flag, f'{{"VLLMKVCacheSaturaton": {value}}}')
        assert result.returncode == 2
        assert "did you mean VLLMKVCacheSaturation?" in result.stderr, result.stderr


def test_alert_rules_check_names_the_command_the_user_typed(tmp_path: Path) -> None:
    """The remedy for stale rules is `vllm-sidecar alert-rules`, not a developer's module path."""
    out = tmp_path / "rules"
    assert _cli("alert-rules", "--out-dir", str(out)).returncode == 0
    with (out / "vllm-sidecar.rules.yaml").open("a", encoding="utf-8") as rules:
        rules.write("# edited\n")
    stale = _cli("alert-rules", "--out-dir", str(out), "--check")
    assert stale.returncode == 1
    assert "run vllm-sidecar alert-rules without --check" in stale.stdout, stale.stdout
    assert "python -m" not in stale.stdout
    lonely = _cli("alert-rules", "--check")
    assert lonely.returncode == 2
    assert lonely.stderr.startswith("vllm-sidecar alert-rules: --check needs --out-dir")


@pytest.mark.parametrize(
    "command",
    ["run", "check-config", "top", "emulate", "loadgen", "demo", "alert-rules", "samples"],
)
def test_every_subcommand_help_says_what_it_does(command: str) -> None:
    """A paragraph between the usage and the options (`demo --help` had none)."""
    result = _cli(command, "--help")
    assert result.returncode == 0
    before_options = re.split(r"\n(?:options|positional arguments):\n", result.stdout)[0]
    description = before_options.split("\n\n", 1)[1] if "\n\n" in before_options else ""
    assert len(description.split()) >= 8, result.stdout[:600]


def test_demo_help_gives_every_option_text_and_a_readable_metavar() -> None:
    """No `--sample-rate SAMPLE_RATE` without its default."""
    options = _option_help(_cli("demo", "--help").stdout)
    assert set(options) >= {"--duration", "--cycle", "--sample-rate", "--samples-dir", "--seed"}
    for flag, text in options.items():
        assert text.strip(), flag
        assert flag.upper().lstrip("-").replace("-", "_") not in text, (flag, text)
    assert "default 0.2" in options["--sample-rate"]
    assert "default ./samples-data" in options["--samples-dir"]


@pytest.mark.parametrize("command", [["check-config"], ["alert-rules"], ["run", "--help"]])
def test_piping_into_a_reader_that_stops_early_prints_no_traceback(command: list[str]) -> None:
    """`vllm-sidecar check-config | head -3`: the reader closes the pipe before the output ends."""
    child = subprocess.Popen(
        [*CLI, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert child.stdout is not None
    child.stdout.close()  # before the interpreter has started: every write finds no reader
    _, stderr = child.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipeError" not in stderr, stderr
    assert child.returncode == 0


@pytest.mark.parametrize("command", ["loadgen", "demo", "top", "alert-rules", "emulate"])
def test_every_option_of_the_tools_says_what_it_does(command: str) -> None:
    """`loadgen --help` listed --profile, --burst-seconds, --max-tokens ... with no word."""
    options = _option_help(_cli(command, "--help").stdout)
    assert options
    for flag, text in options.items():
        words = text.split()
        described = words[1:] if words and (words[0].isupper() or words[0][0] in "{[") else words
        assert described, f"{command} {flag} has no help text"

"""Write the rule file and the example Alertmanager config from the catalogue.

Usage::

    python -m sidecar.alerting.generate                 # regenerate alerts/ (committed output)
    python -m sidecar.alerting.generate --check         # exit 1 if alerts/ is out of date
    python -m sidecar.alerting.generate --out-dir DIR --config sidecar.yaml \\
        --instance-label namespace --instance-label pod --vllm-up-selector 'job="vllm"'
    vllm-sidecar alert-rules --config sidecar.yaml > rules.yaml   # the rule file on stdout
    vllm-sidecar alert-rules --config sidecar.yaml --out-dir DIR  # both files into DIR

Without ``--config`` the settings' defaults are used (never the environment), so the committed
output does not depend on who ran the generator. With ``--config``, thresholds, ``for``
overrides and SLO settings come from that sidecar settings file, exactly as a running sidecar
reads them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sidecar.alerting import catalogue
from sidecar.alerting.rulefile import render_alertmanager_example, render_rules
from sidecar.alerting.spec import RuleConfig
from sidecar.config import ConfigError, fields_of_settings, load

RULES_FILE = "vllm-sidecar.rules.yaml"
ALERTMANAGER_FILE = "alertmanager.example.yaml"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "alerts"


def render(config: RuleConfig) -> dict[str, str]:
    """File name -> content of every generated file."""
    return {
        RULES_FILE: render_rules(config),
        ALERTMANAGER_FILE: render_alertmanager_example(config),
    }


def add_arguments(parser: argparse.ArgumentParser, default_out: Path | None) -> None:
    """The generator's options, shared by ``python -m`` and the CLI subcommand."""
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=default_out,
        metavar="DIR",
        help=f"Write {RULES_FILE} and {ALERTMANAGER_FILE} here"
        + (f" (default: {default_out})." if default_out else " (default: the rules to stdout)."),
    )
    parser.add_argument("--check", action="store_true", help="Compare instead of writing.")
    parser.add_argument("--config", type=Path, help="Sidecar settings YAML (thresholds, SLOs).")
    parser.add_argument(
        "--runbook-url",
        default=None,
        metavar="URL",
        help="Runbook document the alerts link to (runbook_url = URL#<alert>); default: "
        "alert_runbook_url of --config, else the project's alerts/runbooks.md.",
    )
    parser.add_argument("--vllm-selector", default=None, help="Extra matchers for vllm:* series.")
    parser.add_argument("--vllm-up-selector", default=None, help="Matchers of vLLM's up series.")
    parser.add_argument(
        "--sidecar-selector", default=None, help="Extra matchers for sidecar series."
    )
    parser.add_argument("--sidecar-up-selector", default=None, help="Matchers of the sidecar's up.")
    parser.add_argument(
        "--instance-label",
        action="append",
        default=[],
        help="A label that tells vLLM servers apart (repeatable); alerts keep it.",
    )
    parser.add_argument(
        "--no-check-slo-edges",
        action="store_true",
        help="Allow SLO thresholds off vLLM's default buckets (custom --custom-histogram-buckets).",
    )


def register(subparsers: Any) -> None:
    """``vllm-sidecar alert-rules``: render rules matching this sidecar's settings."""
    parser = subparsers.add_parser(
        "alert-rules",
        help="Write Prometheus rules and an example Alertmanager config for these settings.",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(parser, default_out=None)  # never write into the cwd unasked
    parser.set_defaults(func=run, command=parser.prog)


def config_from_args(args: argparse.Namespace) -> RuleConfig:
    """The rule configuration the command line asks for."""
    config = RuleConfig.from_settings(load(args.config)) if args.config else RuleConfig()
    selectors = {
        name: getattr(args, name)
        for name in ("vllm_selector", "vllm_up_selector", "sidecar_selector", "sidecar_up_selector")
        if getattr(args, name) is not None
    }
    if args.runbook_url is not None:
        # checked like the setting of the same name, so a bad URL is one line naming it
        runbook = fields_of_settings()["alert_runbook_url"].check(args.runbook_url)
        config = replace(config, runbook_url=runbook)
    return replace(config, instance_labels=tuple(args.instance_label), **selectors)


def run(args: argparse.Namespace) -> int:
    """Generate (or ``--check``) the files; 0 on success, 1 on drift, 2 on bad configuration."""
    command = args.command  # messages name the command the user typed, to type it again
    try:
        config = config_from_args(args)
        catalogue.validate(config, check_slo_edges=not args.no_check_slo_edges)
    except (ConfigError, ValueError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    if args.out_dir is None:
        if args.check:
            print(f"{command}: --check needs --out-dir", file=sys.stderr)
            return 2
        sys.stdout.write(render(config)[RULES_FILE])
        return 0
    stale: list[str] = []
    for name, content in render(config).items():
        path = args.out_dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date (run {command} without --check): " + ", ".join(stale))
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sidecar.alerting.generate``: writes into the checkout's ``alerts/``."""
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.alerting.generate", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser, default_out=DEFAULT_OUT)
    parser.set_defaults(command=parser.prog)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

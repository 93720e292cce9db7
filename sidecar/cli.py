"""The ``vllm-sidecar`` command line.

``run`` and ``check-config`` get one flag per setting, generated from :class:`Settings`, so a
setting has the same name as a flag (``--scrape-interval``), an environment variable
(``VLLM_SIDECAR_SCRAPE_INTERVAL``) and a YAML key (``scrape_interval``). Other subcommands live
beside the code they drive and register themselves through ``register(subparsers)``; only the
module of the subcommand being run is imported, so ``run`` does not carry the emulator, the load
generator or the review stack (numpy, duckdb) in its memory (~13 MB).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.config import ConfigError, Settings, fields_of_settings, load
from sidecar.extras import EXIT_MISSING_EXTRA, MissingExtraError
from sidecar.settings_schema import SettingField

Handler = Callable[[argparse.Namespace], int]

SUBCOMMAND_MODULES = {
    "top": "sidecar.top",
    "emulate": "sidecar.emulator.cli",
    "loadgen": "sidecar.loadgen.cli",
    "demo": "sidecar.demo",
    "alert-rules": "sidecar.alerting.generate",
    "samples": "sidecar.samples.cli",
}
"""Subcommand -> the module that adds it (each has ``register(subparsers)``)."""
_BUILT_IN = frozenset({"run", "check-config"})

_SETTING_PREFIX = "setting__"


SETTING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("where things are", ("upstream", "listen", "admin_listen", "proxy_enabled", "pod_name")),
    ("scraping", ("scrape_", "metrics_path", "history_", "min_requests_")),
    ("proxy", ("max_body_", "upstream_", "api_keys_", "shutdown_")),
    ("sampling", ("sample_", "samples_dir", "redact_", "deployment", "spool_", "upload_")),
    ("S3 (credentials come from boto3's standard chain)", ("s3_",)),
    ("alerts and SLOs", ("alert_", "alertmanager_url", "slo_", "external_labels")),
    ("logging", ("log_",)),
)
"""``run --help`` sections: a setting goes to the first group naming it, or one of whose prefixes
(entries ending in ``_``) it starts with; names already say where a setting belongs, so a new
setting needs no extra declaration."""
_OTHER_GROUP = "other settings"


def setting_group(name: str) -> str:
    """The ``--help`` section of a setting."""
    for title, entries in SETTING_GROUPS:
        if any(name == e or (e.endswith("_") and name.startswith(e)) for e in entries):
            return title
    return _OTHER_GROUP


def _default_text(field: SettingField) -> str:  # noqa: PLR0911 - one answer per kind
    if field.name == "pod_name":
        return "$HOSTNAME or 'local'"
    default = field.default
    if field.structured:
        return "none" if not default else json.dumps(default)
    if default is None:
        return "none"
    if isinstance(default, Path) and not default.is_absolute():
        return f"./{default} in the working directory"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    if isinstance(default, int) and field.metavar == "BYTES" and default >= 1024 * 1024:
        return f"{default // (1024 * 1024)} MiB"
    return repr(default) if default == "" else str(default)


def _help_text(field: SettingField) -> str:
    text = field.description or field.name.replace("_", " ").capitalize() + "."
    return f"{text} (default: {_default_text(field)})".replace("%", "%%")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per setting, grouped, with defaults, metavars and choices."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML file of settings (flat keys, as below in snake_case; env VLLM_SIDECAR_CONFIG).",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for title in [*(title for title, _ in SETTING_GROUPS), _OTHER_GROUP]:
        groups[title] = parser.add_argument_group(title)
    for name, field in fields_of_settings().items():
        group = groups[setting_group(name)]
        flag = "--" + name.replace("_", "-")
        dest = _SETTING_PREFIX + name
        if field.annotation is bool:
            group.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help_text(field),
            )
        elif field.choices:
            shown = ",".join(choice or "''" for choice in field.choices)
            group.add_argument(
                flag, dest=dest, default=None, metavar="{" + shown + "}", help=_help_text(field)
            )
        else:
            group.add_argument(
                flag, dest=dest, default=None, metavar=field.metavar, help=_help_text(field)
            )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load settings with the flags in ``args`` winning over env and file."""
    declared = fields_of_settings()
    flags: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith(_SETTING_PREFIX) or value is None:
            continue
        name = key[len(_SETTING_PREFIX) :]
        flags[name] = declared[name].from_text(value) if isinstance(value, str) else value
    return load(config_file=args.config, **flags)


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from sidecar import app

    app.check(settings)  # the checks ``run`` makes before it starts anything
    print(json.dumps(settings.masked(), indent=2, sort_keys=True))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _without_rich()
    from sidecar import app, logs

    logs.configure(settings.log_level, settings.log_format)
    return app.run(settings)


def _without_rich() -> None:
    """Keep rich out of the long-lived ``run`` process (~3 MB of RSS).

    structlog imports rich eagerly whenever it is installed, only for pretty console
    tracebacks; rich is here for ``top``. Marking it unimportable before structlog's first import
    makes structlog fall back to plain tracebacks.
    """
    if "structlog" not in sys.modules:
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only the modules that subcommand needs are imported.

    Without one (or for an unknown word, so argparse can list the choices) every subcommand is
    registered.
    """
    parser = argparse.ArgumentParser(
        prog="vllm-sidecar",
        description="Observability sidecar and alerting pack for a self-hosted vLLM server.",
    )
    parser.add_argument("--version", action="version", version=f"vllm-sidecar {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = subparsers.add_parser(
        "run",
        usage="vllm-sidecar run [--config FILE] [--SETTING VALUE ...]",
        help="Scrape, derive, alert and proxy beside vLLM.",
        description="Scrape, derive, alert and proxy beside vLLM. Every setting below is also an "
        "environment variable VLLM_SIDECAR_<NAME> and a key of the --config YAML file; flags win "
        "over the environment, which wins over the file. SECONDS also take Prometheus durations "
        "(30s, 5m, 1h30m); JSON settings take a JSON object or list.",
    )
    add_setting_flags(run)
    run.set_defaults(func=_cmd_run)

    check = subparsers.add_parser(
        "check-config",
        usage="vllm-sidecar check-config [--config FILE] [--SETTING VALUE ...]",
        help="Print the effective settings (secrets masked) or the first error.",
        description="Check settings exactly as run does (the same flags, environment and file), "
        "print them with secrets masked, or one line naming the bad field and exit 2.",
    )
    add_setting_flags(check)
    check.set_defaults(func=_cmd_check_config)

    if command in _BUILT_IN:
        wanted: list[str] = []
    elif command in SUBCOMMAND_MODULES:
        wanted = [SUBCOMMAND_MODULES[command]]
    else:
        wanted = list(SUBCOMMAND_MODULES.values())
    for module_name in wanted:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv`` (its first word not starting with ``-``), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def _leaf_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)subcommand's parser that ``args`` came from (``samples query`` -> query's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _leaf_parser(action.choices[chosen], args)
    return parser


def _reject_unknown(
    parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]
) -> None:
    """argparse's error for leftover words, with a did-you-mean for a misspelt option."""
    leaf = _leaf_parser(parser, args)
    options = [flag for action in leaf._actions for flag in action.option_strings]
    typed = next((word.split("=")[0] for word in unknown if word.startswith("--")), None)
    close = difflib.get_close_matches(typed, options, n=1) if typed else []
    hint = f"; did you mean {close[0]}?" if close else ""
    leaf.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _glue_negative_values(words: Sequence[str]) -> list[str]:
    """``--flag -1s`` -> ``--flag=-1s``: argparse takes ``-1s`` for an option and answers
    "expected one argument"; no option starts with a digit, so the value reaches its check and
    the user reads what is wrong with it."""
    glued: list[str] = []
    for word in words:
        previous = glued[-1] if glued else ""
        if re.match(r"-\.?\d", word) and previous.startswith("--") and "=" not in previous:
            glued[-1] = f"{previous}={word}"
        else:
            glued.append(word)
    return glued


def _dispatch(argv: Sequence[str] | None) -> int:
    """Parse the command line and run the chosen command."""
    words = _glue_negative_values(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_word(words))
    args, unknown = parser.parse_known_args(words)
    if unknown:
        _reject_unknown(parser, args, unknown)
    handler: Handler = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"vllm-sidecar: invalid config: {exc}", file=sys.stderr)
        return 2
    except MissingExtraError as exc:
        print(exc, file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is caught below
    except BrokenPipeError:
        # `check-config | head`: the reader has gone, which is no error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not print a traceback either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""``vllm-sidecar emulate``: run the vLLM emulator standalone.

Every field of :class:`EmulatorOptions` is a flag (``num_gpu_blocks`` -> ``--num-gpu-blocks``,
booleans get ``--x/--no-x``), with the field's docstring as help, so a new knob never needs CLI
code. ``--api-key`` takes one or more keys, like vLLM, and falls back to ``VLLM_API_KEY``.
The command prints one line with the URL, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import os
import signal
import sys
import typing
from typing import Any

from sidecar.emulator.options import EmulatorOptions

_RENAMED = {"api_keys": "api_key"}
_OWN_FLAGS = ("listen", "log_level")


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of EmulatorOptions, read from its source."""
    tree = ast.parse(inspect.getsource(EmulatorOptions))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for previous, node in itertools.pairwise(body):
        if (
            isinstance(previous, ast.AnnAssign)
            and isinstance(previous.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[previous.target.id] = " ".join(node.value.value.split())
    return docs


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    docs = _field_docs()
    hints = typing.get_type_hints(EmulatorOptions)
    group = parser.add_argument_group("emulator options")
    for field in dataclasses.fields(EmulatorOptions):
        name = field.name
        flag = "--" + _RENAMED.get(name, name).replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = (docs.get(name, "") + f" (default: {default!r})").replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text.strip()}
        hint = hints[name]
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if name == "api_keys":
            kwargs.update(nargs="+", metavar="KEY", help="Accepted API keys (else VLLM_API_KEY).")
        elif hint is bool or args == [bool]:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        else:
            scalar = args[0] if args else hint
            if typing.get_origin(scalar) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(scalar))
            else:
                kwargs["type"] = scalar
        group.add_argument(flag, **kwargs)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) -> ``(host, port)``; ValueError if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen expects HOST:PORT with a port 0-65535, got {value!r}")
    return host.strip("[]"), int(port)


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """Build options from the flags that were given (ValueError names every bad field)."""
    given: dict[str, Any] = {}
    for field in dataclasses.fields(EmulatorOptions):
        value = getattr(args, field.name, None)
        if value is not None:
            given[field.name] = value
    if "api_keys" in given:
        given["api_keys"] = tuple(given["api_keys"])
    elif os.environ.get("VLLM_API_KEY"):
        given["api_keys"] = (os.environ["VLLM_API_KEY"],)
    return EmulatorOptions(**given)


async def _serve(options: EmulatorOptions, host: str, port: int) -> int:
    from sidecar.emulator.runner import run_emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with run_emulator(options, host=host, port=port) as emulator:
        auth = ", API key required on /v1" if options.api_keys else ""
        print(
            f"vLLM emulator ({options.metrics_profile} metrics, {options.data_parallel} engine(s)"
            f"{auth}) serving {options.model} at {emulator.url}",
            flush=True,
        )
        await stop.wait()
    return 0


def _main(args: argparse.Namespace) -> int:
    from sidecar import logs

    try:
        host, port = parse_listen(args.listen)
        options = options_from_args(args)
    except ValueError as exc:
        print(f"vllm-sidecar emulate: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        result: int = runner(_serve(options, host, port))
    except OSError as exc:
        print(f"vllm-sidecar emulate: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return result


def register(subparsers: Any) -> None:
    """Add ``emulate`` to the command line."""
    parser = subparsers.add_parser(
        "emulate",
        help="Run a vLLM stand-in (OpenAI API, /metrics, engine model, fault injection).",
        description="Serve vLLM's OpenAI API and /metrics from an emulated engine (no GPU). "
        "Every engine, latency, text and fault knob is a flag; faults can also be changed at "
        "run time with POST /_emulator/faults.",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="Address to serve on (default 127.0.0.1:8000).",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="Least severe log level written (default info).",
    )
    _add_option_flags(parser)
    parser.set_defaults(func=_main)

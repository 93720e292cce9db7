"""``python -m sidecar.realvllm install``: build (or reuse) vLLM's venv and the tiny model."""

from __future__ import annotations

import argparse
import time

from sidecar.realvllm.install import ensure_installed
from sidecar.realvllm.model import ensure_model


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sidecar.realvllm")
    parser.add_argument("command", choices=["install"])
    parser.add_argument(
        "--seed",
        type=int,
        action="append",
        help="model version to build (repeatable; default 0)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    env = ensure_installed()
    models = [str(ensure_model(env, seed)) for seed in args.seed or [0]]
    print(f"real vLLM ready in {time.monotonic() - started:.0f} s: {env.venv} (models {models})")


if __name__ == "__main__":
    main()

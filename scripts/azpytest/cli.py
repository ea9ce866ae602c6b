"""The `azpytest` command: one subcommand per step of the action."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from azpytest import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azpytest",
        description="Run pytest integration tests against Azure with GitHub OIDC credentials.",
    )
    parser.add_argument("--version", action="version", version=f"azpytest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sandbox = commands.add_parser(
        "sandbox",
        help="run local stand-ins of GitHub OIDC, Entra ID, Key Vault, ARM and AKS",
        description=(
            "Start local stand-ins of GitHub's OIDC endpoint, Entra ID, Key Vault, ARM and an "
            "AKS API server behind a CONNECT proxy, then run COMMAND with HTTPS_PROXY, "
            "REQUESTS_CA_BUNDLE, ACTIONS_ID_TOKEN_REQUEST_* and AZURE_* set, and stop everything "
            "when it ends. Without COMMAND, print the environment as export lines and serve "
            "until interrupted."
        ),
    )
    sandbox.add_argument(
        "--scenario",
        metavar="FILE",
        help="YAML or JSON file describing tenants, apps, vaults, clusters, faults",
    )
    sandbox.add_argument(
        "--latency-ms",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="added to every answer (default 0)",
    )
    sandbox.add_argument(
        "--log", metavar="FILE", help="append one JSON line per request (never a token or secret)"
    )
    sandbox.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="command to run inside the sandbox",
    )
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        return _sandbox(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


def _sandbox(args: argparse.Namespace) -> int:
    # The sandbox is a test and demo tool: only this subcommand imports it.
    from azpytest.sandbox import Sandbox, ScenarioError, build_scenario, load_scenario

    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        scenario = load_scenario(args.scenario) if args.scenario else build_scenario({})
    except ScenarioError as exc:
        print(f"azpytest sandbox: error: --scenario {exc}", file=sys.stderr)
        return 2
    log_file = None
    if args.log:
        try:
            log_file = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"azpytest sandbox: error: --log {args.log}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        with Sandbox(scenario, latency_ms=args.latency_ms, log_sink=log_file) as sandbox:
            if not command:
                return _serve(sandbox.env)
            return _run(command, {**os.environ, **sandbox.env})
    finally:
        if log_file is not None:
            log_file.close()


def _serve(env: dict[str, str]) -> int:
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    print("# serving; Ctrl-C stops the sandbox", flush=True)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    return 0


def _run(command: list[str], env: dict[str, str]) -> int:
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(
            f"azpytest sandbox: error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr
        )
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention

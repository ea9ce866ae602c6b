"""The `azpytest` command: one subcommand per step of the action."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from azpytest import __version__, errors
from azpytest.github import Workflow
from azpytest.inputs import GROUPS, INPUTS, STEPS, Input, non_negative_int
from azpytest.report.command import add_arguments as add_report_arguments


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line naming the command and the problem, exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="azpytest",
        description="Run pytest integration tests against Azure with GitHub OIDC credentials.",
    )
    parser.add_argument("--version", action="version", version=f"azpytest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inputs = _Parser(add_help=False)
    for group_name in GROUPS:
        group = inputs.add_argument_group(group_name)
        for spec in INPUTS:
            if spec.group == group_name and set(STEPS) & set(spec.steps):
                _add_flag(group, spec)

    commands.add_parser(
        "prepare",
        parents=[inputs],
        help="GitHub OIDC -> Entra ID credential, Key Vault secrets masked and exported",
        description=(
            "Choose the credential (GitHub OIDC inside Actions, DefaultAzureCredential outside), "
            "read the Key Vault secrets named by --secrets, mask them and export them to the "
            "later steps (GITHUB_ENV) or, outside Actions, to a 0600 file of export lines. "
            "Each input is also read from AZPYTEST_<NAME>, then from .env."
        ),
    )
    commands.add_parser(
        "run",
        parents=[inputs],
        help="run pytest with JUnit output, the plugin, shards and the prepared environment",
        description=(
            "Run pytest in a subprocess (output live) with --junitxml, the azpytest plugin and "
            "what prepare exported. Exit code: pytest's, except that no tests collected (5) "
            "fails unless --allow-no-tests."
        ),
    )
    exec_parser = commands.add_parser(
        "exec",
        parents=[inputs],
        help="run any command with the token broker: its own Azure code gets the job's tokens",
        description=(
            "Run COMMAND with the token broker (Azure's managed-identity endpoint on loopback, "
            "serving the job's Entra ID tokens) and IDENTITY_ENDPOINT, IDENTITY_HEADER, "
            "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_SUBSCRIPTION_ID set, so its "
            "DefaultAzureCredential works for a run of any length. Exit code: the command's "
            "(128 + N when signal N ended it); SIGINT and SIGTERM are passed on; the broker "
            "stops with the command."
        ),
    )
    exec_parser.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command and its arguments"
    )
    commands.add_parser(
        "cleanup",
        parents=[inputs],
        help="delete the run's credential files (kubeconfig, profiles); keep the results",
        description=(
            "Delete every credential file and folder the run folder's record lists, and "
            "nothing else; keep the JUnit file, artifacts, durations and the audit log. Reads "
            "only --run-dir (or AZPYTEST_RUN_DIR); refuses a folder azpytest did not make."
        ),
    )
    report = commands.add_parser(
        "report",
        help="job summary, annotations and outputs from JUnit files",
        description=(
            "Write the job summary, failure annotations and step outputs from pytest's JUnit "
            "XML files; with --merge, also one merged JUnit file. The JUnit file defaults to "
            "--junit-path (AZPYTEST_JUNIT_PATH), else the run folder's."
        ),
    )
    add_report_arguments(report)
    for spec in INPUTS:
        if "report" in spec.steps:
            _add_flag(report, spec)
    token = commands.add_parser(
        "kube-token",
        help="print a Kubernetes ExecCredential with a fresh Entra token (kubeconfig exec)",
        description=(
            "Print a Kubernetes ExecCredential with a fresh Entra token for an AKS API server: "
            "the exec plugin of the kubeconfig prepare writes (kubectl runs it). Stdout is the "
            "credential and nothing else; a failure is a diagnosis on stderr."
        ),
    )
    token.add_argument(
        "--server-id", required=True, help="the AKS server app the token is for (its audience)"
    )
    for spec in INPUTS:
        if "kube-token" in spec.steps:
            _add_flag(token, spec)

    sandbox = commands.add_parser(
        "sandbox",
        help="run local stand-ins of GitHub OIDC, Entra ID, Key Vault, ARM and AKS",
        description=(
            "Start local stand-ins of GitHub's OIDC endpoint, Entra ID, Key Vault, ARM and an "
            "AKS API server behind a CONNECT proxy, then run COMMAND with HTTPS_PROXY, "
            "REQUESTS_CA_BUNDLE, ACTIONS_ID_TOKEN_REQUEST_* and AZURE_* set, and stop everything "
            "when it ends. Without COMMAND, print the environment as export lines and serve "
            "until interrupted. Needs the sandbox extra: pip install 'azpytest[sandbox]'."
        ),
    )
    sandbox.add_argument(
        "--scenario",
        metavar="FILE",
        help="YAML or JSON file describing tenants, apps, vaults, clusters, faults",
    )
    sandbox.add_argument(
        "--latency-ms",
        type=non_negative_int,
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


def _add_flag(group: argparse._ActionsContainer, spec: Input) -> None:
    """A flag from the inputs table: booleans are switches (--broker also --no-broker)."""
    names = (spec.flag, *spec.flags)
    if spec.name == "broker":  # on by default in Actions: --no-broker turns it off
        group.add_argument(*names, action=argparse.BooleanOptionalAction, help=spec.help)
    elif spec.kind == "bool":
        group.add_argument(*names, action="store_const", const="true", help=spec.help)
    else:
        group.add_argument(*names, metavar="VALUE", help=spec.help)


def _flags(args: argparse.Namespace) -> dict[str, str | None]:
    values = {spec.name: getattr(args, spec.dest, None) for spec in INPUTS}
    if values.get("broker") is not None:
        values["broker"] = "true" if values["broker"] else "false"
    return values


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = build_parser().parse_known_args(arguments)
    except SystemExit as exc:  # --help, --version, bad flags (one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if extra:
        print(
            f"azpytest {args.command}: error: unrecognized arguments: {' '.join(extra)}",
            file=sys.stderr,
        )
        return 2
    if args.command == "report":
        from azpytest.report import command

        return command.run(args, os.environ)
    if args.command == "sandbox":
        return _sandbox(args)
    if args.command == "kube-token":
        from azpytest import kube

        return kube.token_main(args.server_id, _flags(args))
    return _step(args)


def _step(args: argparse.Namespace) -> int:
    workflow = Workflow(os.environ)
    try:
        return _step_with(args, workflow)
    finally:
        workflow.finish()


def _step_with(args: argparse.Namespace, workflow: Workflow) -> int:
    from azpytest import settings
    from azpytest.steps import cleanup, prepare
    from azpytest.steps import run as runner

    try:
        if args.command == "cleanup":
            flags = _flags(args)
            latest = None if flags.get("run-dir") else settings.latest_link(os.environ)
            return cleanup.run(settings.load_run_dir(flags, os.environ), latest)
        loaded = settings.load(_flags(args), os.environ)
        if args.command == "run":
            return runner.run(loaded, workflow)
        if args.command == "exec":
            command = list(args.cmd)
            if command[:1] == ["--"]:
                command = command[1:]
            return runner.exec_command(loaded, workflow, command)
    except settings.InputError as exc:
        return errors.bad_input(args.command, exc, workflow)
    return prepare.run(loaded, workflow)


def _sandbox(args: argparse.Namespace) -> int:
    # The sandbox is a test and demo tool in a distribution of its own (azpytest-sandbox, the
    # `sandbox` extra): only this subcommand imports it, and a plain install has it not.
    try:
        from azpytest_sandbox import Sandbox, ScenarioError, build_scenario, load_scenario
    except ModuleNotFoundError as exc:
        # Missing: the package or one of its dependencies (trustme, jwt, ...). A missing module
        # of its own is a broken install, not a missing one: that keeps its traceback.
        if (exc.name or "").startswith("azpytest_sandbox."):
            raise
        print(
            "azpytest sandbox: error: the sandbox is not installed: "
            "pip install 'azpytest[sandbox]' (in this repository: uv sync)",
            file=sys.stderr,
        )
        return 2

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
    from azpytest.steps.run import run_forwarding

    try:
        return run_forwarding(command, env)
    except OSError as exc:
        print(
            f"azpytest sandbox: error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr
        )
        return 127

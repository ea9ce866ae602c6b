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

from azpytest import __version__, errors
from azpytest.github import Workflow
from azpytest.settings import non_negative_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azpytest",
        description="Run pytest integration tests against Azure with GitHub OIDC credentials.",
    )
    parser.add_argument("--version", action="version", version=f"azpytest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inputs = argparse.ArgumentParser(add_help=False)
    for title, names in INPUT_GROUPS.items():
        group = inputs.add_argument_group(title)
        for name in names:
            if name == "broker":  # on by default in Actions: --no-broker turns it off
                group.add_argument(
                    "--broker", action=argparse.BooleanOptionalAction, help=INPUT_HELP[name]
                )
            elif name in BOOLEAN_INPUTS:
                group.add_argument(
                    f"--{name}", action="store_const", const="true", help=INPUT_HELP[name]
                )
            else:
                group.add_argument(f"--{name}", metavar="VALUE", help=INPUT_HELP[name])

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
    )
    commands.add_parser(
        "report",
        add_help=False,
        help="job summary, annotations and outputs from JUnit files (azpytest report --help)",
    )
    commands.add_parser(
        "kube-token",
        add_help=False,
        help="print a Kubernetes ExecCredential with a fresh Entra token (kubeconfig exec)",
    )

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


INPUT_HELP = {
    "tenant-id": "Directory (tenant) ID of the app registration (or AZURE_TENANT_ID)",
    "client-id": "Application (client) ID of the app registration (or AZURE_CLIENT_ID)",
    "subscription-id": "subscription of the AKS cluster (or AZURE_SUBSCRIPTION_ID)",
    "cloud": "AzureCloud (default), AzureUSGovernment or AzureChinaCloud",
    "audience": "audience of the GitHub OIDC token (default api://AzureADTokenExchange)",
    "key-vault": "vault name or URL to read the secrets from",
    "secrets": "YAML: ENV_NAME: secret-name lines, or a list of names and prefix globs",
    "aks-resource-group": "resource group of the AKS cluster",
    "aks-cluster": "name of the AKS cluster",
    "aks-admin": "use the cluster admin credential",
    "run-dir": "folder for this run's files (default $RUNNER_TEMP/azpytest/<run>)",
    "env-file": "the .env file to fill unset variables from (default ./.env)",
    "debug": "log more (never a secret)",
    "profiles": "YAML: connections (postgres, azure-sql) and the dbt profile, from Key Vault",
    "tests": "test paths or node ids (space-separated or a YAML list)",
    "markers": "pytest -m expression",
    "pytest-args": "more pytest arguments (a YAML list, or words; never run through a shell)",
    "working-directory": "where pytest runs",
    "workers": "pytest-xdist workers (-n): a number or auto",
    "junit-path": "the JUnit XML file (default <run-dir>/junit.xml)",
    "shard-count": "split the suite into this many shards (pytest-split)",
    "shard-index": "this shard, 0 to shard-count - 1",
    "durations-path": "test durations from an earlier run, to balance the shards",
    "allow-no-tests": "do not fail when pytest collects no tests",
    "rerun-failed-from": "run only the tests that failed or errored in this JUnit file",
    "reruns": "retry a failing test up to N times (pytest-rerunfailures)",
    "python": "the interpreter that runs pytest (default: azpytest's)",
    "kubelogin": "auto (default), always or never: azpytest's kubelogin stand-in on PATH",
    "broker": "serve the job's tokens to the tests' own DefaultAzureCredential (default: on in "
    "GitHub Actions)",
}
BOOLEAN_INPUTS = {"aks-admin", "debug", "allow-no-tests"}
INPUT_GROUPS = {
    "identity and Key Vault": (
        "tenant-id",
        "client-id",
        "subscription-id",
        "cloud",
        "audience",
        "key-vault",
        "secrets",
        "aks-resource-group",
        "aks-cluster",
        "aks-admin",
        "profiles",
        "run-dir",
        "env-file",
        "debug",
    ),
    "test run": (
        "tests",
        "markers",
        "pytest-args",
        "working-directory",
        "workers",
        "junit-path",
        "shard-count",
        "shard-index",
        "durations-path",
        "allow-no-tests",
        "rerun-failed-from",
        "reruns",
        "python",
        "broker",
        "kubelogin",
    ),
}


def _flags(args: argparse.Namespace) -> dict[str, str | None]:
    return {name: getattr(args, name.replace("-", "_"), None) for name in INPUT_HELP}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["report"]:
        from azpytest import report

        return report.main(arguments[1:])
    if arguments[:1] == ["kube-token"]:
        # Its own flags (kubelogin's shape), parsed by kube.py; kubectl runs it, not people.
        from azpytest import kube

        return kube.token_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    if args.command == "sandbox":
        return _sandbox(args)
    if args.command in ("prepare", "run", "cleanup", "exec"):
        return _step(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


def _step(args: argparse.Namespace) -> int:
    from azpytest import cleanup, prepare, runner, settings

    workflow = Workflow(os.environ)
    try:
        if args.command == "cleanup":
            return cleanup.run(settings.load_run_dir(_flags(args), os.environ))
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
    from azpytest.runner import run_forwarding

    try:
        return run_forwarding(command, env)
    except OSError as exc:
        print(
            f"azpytest sandbox: error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr
        )
        return 127

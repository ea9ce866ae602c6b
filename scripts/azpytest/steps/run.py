"""`azpytest run`: pytest in a subprocess with the prepared environment and JUnit output.

The suite's output streams live. "No tests collected" (exit 5) is an error unless the user
opts out: a filter that matches nothing must not pass as green. Shards are pytest-split
groups (by recorded durations, else evenly by count); flaky retries are pytest-rerunfailures.

pytest (and `exec`'s command) runs in a process group of its own, recorded in the run folder
while it runs: SIGINT and SIGTERM reach all of it (pytest gets SIGINT, its graceful stop),
teardown has `processes.GRACE_SECONDS`, then the group is killed; nothing of it outlives the
step, and `cleanup` ends what a SIGKILL of ours left running.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO, cast

from azpytest import errors, maskchannel, processes
from azpytest.dbt import ProfileVariableMissing
from azpytest.github import Workflow
from azpytest.masking import Scrubber, write_tokens
from azpytest.report.junit import EMPTY_SHARD, NOTHING_TO_RERUN, failed_node_ids, write_empty
from azpytest.rundir import ENV_VARIABLE, GroupRecord, RunDir
from azpytest.settings import InputError, Settings

TESTS_FAILED = 1
NO_TESTS = 5


def _local_env(settings: Settings) -> dict[str, str]:
    """Outside Actions, what `prepare` wrote to its 0600 export file (Actions has GITHUB_ENV)."""
    path = settings.rundir.local_env
    values: dict[str, str] = {}
    if settings.in_actions or not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = shlex.split(line.removeprefix("export "))
        if parts and "=" in parts[0]:
            name, value = parts[0].split("=", 1)
            values[name] = value
    return values


def pytest_command(settings: Settings, junit: Path, tests: list[str]) -> list[str]:
    options = settings.run
    command = [
        options.python or sys.executable,
        "-m",
        "pytest",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
    ]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        # Otherwise the entry points load them; naming a plugin twice is an error.
        command += [
            "-p",
            "azpytest.plugin",
            "-p",
            "pytest_split.plugin",
            "-p",
            "xdist.plugin",
            "-p",
            "pytest_rerunfailures",
        ]
    # Every option as one `--name=value` word: pytest takes any word that does not start
    # with "-" for a path when it looks for the rootdir, values included.
    if options.markers:
        command += [f"-m={options.markers}"]
    if options.workers:
        command += [f"--numprocesses={options.workers}"]
    if options.reruns:
        command += [f"--reruns={options.reruns}"]
    if options.shard_count > 1:
        command += [
            f"--splits={options.shard_count}",
            f"--group={options.shard_index + 1}",
            "--splitting-algorithm=least_duration",
        ]
    # pytest-split reads and stores durations in one file: this shard's own copy of the
    # input durations, which the run updates with what it measured (for the next run).
    command += ["--store-durations", f"--durations-path={durations_out(settings)}"]
    command += list(options.pytest_args)
    command += tests
    return command


def durations_out(settings: Settings) -> Path:
    return settings.rundir.durations(settings.run.shard_index)


def warn_dotenv_withheld(settings: Settings, workflow: Workflow) -> None:
    """One warning naming the `.env` variables not loaded in CI (settings.DOTENV_CI_WITHHELD)."""
    if settings.dotenv_withheld:
        workflow.warning(errors.dotenv_withheld(settings.env_file, settings.dotenv_withheld))


def run(settings: Settings, workflow: Workflow) -> int:
    warn_dotenv_withheld(settings, workflow)
    settings = settings.claim_run_dir(new=False)
    options = settings.run
    junit = (options.junit_path or settings.rundir.junit).resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    tests = list(options.tests)
    if options.rerun_failed_from:
        root = options.working_directory or Path.cwd()
        tests = []
        for junit_file in options.rerun_failed_from:
            tests += [t for t in failed_node_ids(junit_file, root) if t not in tests]
        earlier = _names(options.rerun_failed_from)
        if not tests:
            # A JUnit file that says so: the report and the merge pass it, explained.
            write_empty(
                junit, NOTHING_TO_RERUN, ", ".join(p.name for p in options.rerun_failed_from)
            )
            workflow.set_output("junit-path", str(junit))
            print(f"azpytest: {earlier} lists no failed tests: nothing to rerun", flush=True)
            return 0
        print(f"azpytest: rerunning the {len(tests)} failed test(s) of {earlier}", flush=True)
    command = pytest_command(settings, junit, tests)
    env = {**os.environ, **_local_env(settings), ENV_VARIABLE: str(settings.run_dir)}
    durations = durations_out(settings)
    if options.durations_path is not None and options.durations_path.is_file():
        shutil.copyfile(options.durations_path, durations)
    with workflow.group("azpytest run: command"):
        print(" ".join(shlex.quote(part) for part in command), flush=True)
    env = _with_kubelogin(settings, env)
    with contextlib.ExitStack() as stack:
        relay, relayed, env = _with_mask_channel(stack, settings, workflow, env)
        if settings.use_broker:
            env = _with_broker(stack, settings, relayed, env, "pytest")
        started = time.monotonic()
        ended = _run_recorded(
            "pytest",
            command,
            env,
            options.working_directory,
            settings.rundir,
            signal.SIGINT,
            relay,
        )
        elapsed = time.monotonic() - started
    _scrub_in_place(env, [junit, durations, settings.rundir.audit])
    workflow.set_output("junit-path", str(junit))
    for line in _how_it_ended("pytest", ended, signal.SIGINT):
        print(line, flush=True)
    print(f"azpytest: pytest exited {ended.code} after {elapsed:.1f} s; JUnit: {junit}", flush=True)
    # Ended by signal N (pytest exits 2 when interrupted): 128 + N, as a killed process would.
    code = 128 + ended.received if ended.received is not None else ended.code
    if code == NO_TESTS and options.shard_count > 1:
        # More shards than tests (a small suite, or a rerun of few failures): this shard's
        # share is empty. It passes; the merge of all shards judges the whole run.
        which = f"{options.shard_index + 1}/{options.shard_count}"
        write_empty(junit, EMPTY_SHARD, which)
        workflow.notice(errors.empty_shard(which), title=errors.NO_TESTS_TITLE)
        return 0
    if code == NO_TESTS and not options.allow_no_tests:
        workflow.error(
            errors.no_tests_collected(tests, options.markers), title=errors.NO_TESTS_TITLE
        )
        return NO_TESTS
    if code == NO_TESTS:
        return 0
    if code == TESTS_FAILED and options.defer_test_failure:
        # The action's report step fails the job after writing the summary.
        print("azpytest: tests failed; the report step decides the job's outcome", flush=True)
        return 0
    return code


def _names(paths: tuple[Path, ...]) -> str:
    return ", ".join(str(p) for p in paths)


def run_forwarding(
    command: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    run_dir: RunDir | None = None,
    relay: processes.LineRelay | None = None,
) -> int:
    """Run in a process group of its own with the output going straight to ours (live; with
    `relay`, through it), SIGINT/SIGTERM passed on to the group (`processes.run_group`); its
    exit code."""
    what = Path(command[0]).name
    ended = _run_recorded(what, command, env, cwd, run_dir, None, relay)
    for line in _how_it_ended(what, ended, None):
        print(line, flush=True)
    return ended.code


def _run_recorded(
    what: str,
    command: list[str],
    env: dict[str, str],
    cwd: Path | None,
    run_dir: RunDir | None,
    interrupt: int | None,
    relay: processes.LineRelay | None = None,
) -> processes.Outcome:
    """`processes.run_group`, the group recorded in `run_dir` while it runs (for `cleanup`,
    should we be SIGKILLed) and forgotten once nothing of it is left."""
    groups: list[processes.Group] = []

    def record(group: processes.Group) -> None:
        groups.append(group)
        if run_dir is not None:
            run_dir.record_group(GroupRecord(group.pgid, group.started, what))

    try:
        return processes.run_group(
            command, env, cwd, interrupt=interrupt, on_start=record, relay=relay
        )
    finally:
        if run_dir is not None:
            for group in groups:
                run_dir.forget_group(group.pgid)


def _how_it_ended(what: str, ended: processes.Outcome, interrupt: int | None) -> list[str]:
    """What the step says about a signal it passed on and about processes it had to end."""
    lines = []
    if ended.received is not None:
        got = signal.Signals(ended.received).name
        sent = signal.Signals(interrupt).name if interrupt is not None else got
        how = (
            f"still running after the {processes.GRACE_SECONDS:g} s grace period: SIGKILLed"
            if ended.killed
            else "it stopped within the grace period"
        )
        lines.append(f"azpytest: got {got}: sent {sent} to {what}'s process group; {how}")
    elif ended.leftovers:
        lines.append(
            f"azpytest: ended {ended.leftovers} process(es) still running in {what}'s process "
            f"group after it exited (started by {'the tests' if what == 'pytest' else 'it'})"
        )
    return lines


def _with_mask_channel(
    stack: contextlib.ExitStack, settings: Settings, workflow: Workflow, env: dict[str, str]
) -> tuple[processes.LineRelay | None, Workflow, dict[str, str]]:
    """The mask channel for the rest of `stack` (see `maskchannel`): pytest's output relayed
    through us, each mask that the test process (or anything it starts) sends, and each that
    this process makes (the broker's tokens), written on a line of its own in order with it.
    Every token masked here is recorded (0600) for the report step's scrubber. The relay, a
    Workflow that writes through it, and the command's environment."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout is not a file (run called in-process): nothing to order
        return None, workflow, env
    sys.stdout.flush()
    relay = processes.LineRelay(out)
    relayed = Workflow(workflow.environ, out=cast(TextIO, _RelayText(relay)))
    tokens: set[str] = set()
    guard = threading.Lock()

    def record(value: str) -> None:
        with guard:
            if value not in tokens:
                tokens.add(value)
                write_tokens(settings.rundir, tokens)

    maskchannel.on_mask(record)
    path = stack.enter_context(
        maskchannel.serving(lambda value, encoded: relayed.mask(value, encoded=encoded))
    )
    return relay, relayed, {**env, maskchannel.ENV_VARIABLE: path}


def _scrub_in_place(env: dict[str, str], paths: list[Path]) -> None:
    """pytest's files, scrubbed before any step uploads them, of the tokens masked while it
    ran (the broker's among them: the test process may not have known them) and the
    prepared values."""
    scrubber = Scrubber.from_environment(env)
    if not scrubber:
        return
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        clean = scrubber.data(data)
        if clean != data:
            path.write_bytes(clean)


class _RelayText(io.TextIOBase):
    """Our own text output while pytest's is relayed: workflow commands on lines of their
    own, in order with pytest's output."""

    def __init__(self, relay: processes.LineRelay) -> None:
        self._relay = relay

    def write(self, text: str) -> int:
        if text.startswith("::"):
            self._relay.line(text)
        else:
            self._relay.write(text.encode("utf-8"))
        return len(text)


def _with_kubelogin(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """Kubeconfigs that name kubelogin (as ARM writes them) work with no kubelogin binary:
    azpytest's stand-in goes first on the command's PATH unless a real one is there."""
    from azpytest import kube

    folder = kube.install_kubelogin(settings.rundir, settings.run.kubelogin, env)
    if folder is None:
        return env
    print(
        f"azpytest: kubelogin: azpytest's stand-in answers `kubelogin get-token` "
        f"({folder}/kubelogin, first on PATH)",
        flush=True,
    )
    return {**env, "PATH": f"{folder}{os.pathsep}{env.get('PATH', '')}"}


def _with_broker(
    stack: contextlib.ExitStack,
    settings: Settings,
    workflow: Workflow,
    env: dict[str, str],
    what: str,
) -> dict[str, str]:
    """Start the token broker for the rest of `stack`; the command's environment to use it."""
    from azpytest import broker

    served = stack.enter_context(broker.serving(settings, workflow, what))
    return _with_az(settings, broker.child_env(env, served, settings, workflow))


def _with_az(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """Where the az CLI is installed, an `az` shim first on the command's PATH: the suite's
    first az logs az in through the broker (`azshim`), so its shell-outs to az keep
    renewing; a suite that never calls az pays nothing."""
    from azpytest import azshim

    shimmed = azshim.install(
        settings.rundir,
        env,
        subscription=settings.subscription_id,
        client_id=env.get("AZURE_CLIENT_ID"),
        timeout=settings.timeout,
    )
    if shimmed is None:
        return env
    print(
        f"azpytest: az: logs in through the token broker on first use "
        f"({shimmed['AZURE_CONFIG_DIR']}, removed at cleanup)",
        flush=True,
    )
    return shimmed


def _dbt_profile_env(command: list[str], env: dict[str, str]) -> dict[str, str]:
    """The variables the prepared dbt profile reads that `env` lacks: an Entra target's token,
    fresh for this command. A missing other variable stops a `dbt` command before it starts
    (ProfileVariableMissing); any other command runs without the token then."""
    folder = env.get("DBT_PROFILES_DIR")
    if not folder:
        return {}
    from azpytest.dbt import profile_environment

    try:
        added = profile_environment(Path(folder), env)
    except ProfileVariableMissing:
        if Path(command[0]).name in ("dbt", "dbt.exe"):
            raise
        return {}
    for name, value in added.items():
        if name.endswith("_EXPIRES_ON"):
            until = time.strftime("%H:%M:%S UTC", time.gmtime(int(value)))
            token = name.removesuffix("_EXPIRES_ON")
            print(
                f"azpytest: dbt: {token} holds a fresh Entra token for the profile in {folder} "
                f"(valid until {until}); dbt logins after that fail",
                flush=True,
            )
    return added


def exec_command(settings: Settings, workflow: Workflow, command: list[str]) -> int:
    """`azpytest exec -- COMMAND`: any command with the token broker (unless broker: false)
    and the prepared environment; its exit code, 128 + N when signal N ended it."""
    if not command:
        raise InputError("COMMAND", "give the command to run after --: azpytest exec -- CMD ...")
    warn_dotenv_withheld(settings, workflow)
    settings = settings.claim_run_dir(new=False)
    env = {**os.environ, **_local_env(settings), ENV_VARIABLE: str(settings.run_dir)}
    try:
        env.update(_dbt_profile_env(command, env))
    except errors.Diagnosis as diagnosis:
        return errors.die(diagnosis, workflow, "exec")
    except ProfileVariableMissing as exc:
        return errors.bad_input("exec", exc, workflow)
    env = _with_kubelogin(settings, env)
    with contextlib.ExitStack() as stack:
        relay: processes.LineRelay | None = None
        if workflow.in_actions:
            # In a job, what the command starts masks through us as under `run` (a pytest
            # run captures its own stdout). On a laptop masks hide nothing, and the command
            # keeps the terminal: no relay.
            relay, workflow, env = _with_mask_channel(stack, settings, workflow, env)
        if settings.run.broker is not False:  # the reason to use exec: on unless turned off
            env = _with_broker(stack, settings, workflow, env, command[0])
        else:
            print("azpytest: broker: false; the command runs without the token broker", flush=True)
        try:
            return run_forwarding(command, env, None, settings.rundir, relay)
        except OSError as exc:
            print(errors.cannot_run(command[0], exc.strerror), file=sys.stderr, flush=True)
            return 126 if isinstance(exc, PermissionError) else 127

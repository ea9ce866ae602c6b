"""Every process ends with its step: `azpytest run` interrupted by SIGINT or SIGTERM, or
SIGKILLed and followed by `azpytest cleanup`, leaves no process of pytest's group — xdist's
workers and what the tests started included — and the run folder's credentials stay deleted.

Real processes throughout; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from azpytest.rundir import GROUP_PREFIX, GroupRecord, RunDir

DEADLINE = 30.0
GRACE = 5.0  # the documented grace period of `run` (README: `azpytest run`)
CLEANUP_GRACE = 2.0  # cleanup's SIGTERM-to-SIGKILL wait

# Two workers; each runs one test that starts `sleep 300`, records its pid and blocks. The
# fixture writes a credential into the run folder at setup and again at teardown, as one
# refreshing a kubeconfig would: what outlives the step would write it after cleanup.
SUITE = """
import os
import subprocess
import threading
from pathlib import Path

import pytest

from azpytest.rundir import RunDir

OUT = Path(os.environ["LIFETIME_OUT"])


@pytest.fixture
def child():
    run_dir = RunDir(Path(os.environ["AZPYTEST_RUN_DIR"]))
    run_dir.write_private("kubeconfig", "token: from-setup\\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    (OUT / f"child-{os.getpid()}.tmp").write_text(str(sleeper.pid))
    (OUT / f"child-{os.getpid()}.tmp").rename(OUT / f"child-{os.getpid()}")
    yield sleeper
    (OUT / f"teardown-{os.getpid()}").write_text("")
    run_dir.write_private("kubeconfig", "token: from-teardown\\n")


def test_quick():
    pass


@pytest.mark.parametrize("n", [1, 2])
def test_blocks(child, n):
    threading.Event().wait()
"""


def state(pid: int) -> str | None:
    """The process's state letter (/proc/PID/stat), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2]


def running(pid: int) -> bool:
    return state(pid) not in (None, "Z")  # a zombie runs nothing: it waits to be reaped


def group_members(pgid: int) -> list[int]:
    """Every live process in process group `pgid` (field 5 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until(condition: Callable[[], object], what: str, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:g} s: {what}", pytrace=False)
        time.sleep(0.05)


@dataclass
class Step:
    """`python -m azpytest run` started in the background, its output read as it comes."""

    process: subprocess.Popen[str]
    run_dir: RunDir
    out: Path
    env: dict[str, str]
    chunks: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        """What it printed so far."""
        return "".join(self.chunks)

    def all_output(self) -> str:
        """Everything it printed, once every process holding its stdout has gone."""
        self.reader.join(timeout=DEADLINE)
        assert not self.reader.is_alive(), "a process still holds the step's stdout"
        return self.output

    def children(self) -> dict[int, int]:
        """Worker pid -> the pid of the `sleep` its test started."""
        return {
            int(p.name.removeprefix("child-")): int(p.read_text())
            for p in self.out.glob("child-*")
            if not p.name.endswith(".tmp")
        }

    def finish(self) -> int:
        return self.process.wait(timeout=DEADLINE)

    def start_reading(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            while chunk := self.process.stdout.read(1):
                self.chunks.append(chunk)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "RUNNER_"))
    }
    return {**env, "AZPYTEST_RUN_DIR": str(tmp_path / "run"), "AZPYTEST_BROKER": "false"}


def project(tmp_path: Path, name: str, text: str) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def blocked_run(tmp_path: Path) -> Iterator[Step]:
    """`run` with `workers: 2`, both workers in a test that started a child and blocks, and
    pytest's progress showing the quick test done."""
    out = tmp_path / "out"
    out.mkdir()
    root = project(tmp_path, "test_lifetime_suite.py", SUITE)
    env = {
        **base_env(tmp_path),
        "AZPYTEST_WORKING_DIRECTORY": str(root),
        "AZPYTEST_WORKERS": "2",
        "LIFETIME_OUT": str(out),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "azpytest", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    step = Step(process, RunDir(tmp_path / "run"), out, env)
    step.start_reading()
    groups: list[GroupRecord] = []
    try:
        wait_until(
            lambda: (
                process.poll() is not None
                or (len(step.children()) == 2 and "." in step.output.partition("[3 items]")[2])
            ),
            "both workers in their blocking test, the quick one reported",
        )
        assert process.poll() is None, step.output
        groups += step.run_dir.recorded_groups()
        yield step
    finally:
        if process.poll() is None:
            process.kill()
        for group in groups:  # whatever a failure left running
            if group_members(group.pgid):
                os.killpg(group.pgid, signal.SIGKILL)


def cleanup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azpytest", "cleanup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def junit_cases(path: Path) -> list[tuple[str | None, str]]:
    return [
        (case.get("name"), "passed" if len(case) == 0 else case[0].tag)
        for case in ET.parse(path).getroot().iter("testcase")
    ]


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_no_process_of_the_group_outlives_the_step_and_the_credentials_stay_deleted(
    blocked_run: Step, sig: signal.Signals
) -> None:
    step = blocked_run
    (group,) = step.run_dir.recorded_groups()
    workers = step.children()
    assert set(group_members(group.pgid)) == {group.pgid, *workers, *workers.values()}

    step.process.send_signal(sig)
    code = step.finish()

    if sig == signal.SIGKILL:
        assert code == -9
        assert set(group_members(group.pgid)) == {group.pgid, *workers, *workers.values()}
        assert step.run_dir.recorded_groups() == [group]
    else:
        assert code == 128 + sig
        assert (
            f"azpytest: got {sig.name}: sent SIGINT to pytest's process group; it stopped "
            "within the grace period"
        ) in step.all_output().splitlines()
        assert group_members(group.pgid) == []
        assert step.run_dir.recorded_groups() == []
        # pytest's graceful stop: teardown ran in both workers, the JUnit holds what ran.
        assert sorted(p.name for p in step.out.glob("teardown-*")) == sorted(
            f"teardown-{pid}" for pid in workers
        )
        assert ("test_quick", "passed") in junit_cases(step.run_dir.junit)

    done = cleanup(step.env)

    assert done.returncode == 0, done.stderr
    assert group_members(group.pgid) == []
    assert not any(running(pid) for pid in [*workers, *workers.values()])
    assert step.run_dir.recorded_groups() == []
    if sig == signal.SIGKILL:
        assert done.stdout.splitlines()[0] == (
            f"azpytest: cleanup: ended 5 process(es) of pytest's process group {group.pgid}, "
            "left running by a step that was killed (SIGTERM, 2 s, then SIGKILL)"
        )
    step.all_output()  # the stdout's last holders have gone
    made = step.run_dir.recorded()
    assert "kubeconfig" in made
    assert [name for name in made if (step.run_dir / name).exists()] == []
    time.sleep(CLEANUP_GRACE)  # nothing is left to write them again: they stay deleted
    assert [name for name in made if (step.run_dir / name).exists()] == []


def test_a_teardown_that_outlasts_the_grace_period_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    root = project(
        tmp_path,
        "test_stuck.py",
        """
        import os
        import threading
        from pathlib import Path

        import pytest


        @pytest.fixture
        def stuck():
            Path(os.environ["LIFETIME_OUT"], "started").write_text(str(os.getpid()))
            yield
            threading.Event().wait()  # a teardown that never ends


        def test_blocks(stuck):
            threading.Event().wait()
        """,
    )
    env = {**base_env(tmp_path), "AZPYTEST_WORKING_DIRECTORY": str(root), "LIFETIME_OUT": str(out)}
    process = subprocess.Popen(
        [sys.executable, "-m", "azpytest", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid_file = out / "started"
    try:
        wait_until(lambda: pid_file.is_file() and pid_file.read_text(), "the test started")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=DEADLINE)
        took = time.monotonic() - started
        survived = running(int(pid_file.read_text()))
    finally:
        if process.poll() is None:
            process.kill()
        if pid_file.is_file() and running(pytest_pid := int(pid_file.read_text())):
            os.kill(pytest_pid, signal.SIGKILL)  # a failure must not leave it running
    assert process.returncode == 130
    assert GRACE <= took < GRACE + 3
    assert (
        "azpytest: got SIGINT: sent SIGINT to pytest's process group; still running after the "
        "5 s grace period: SIGKILLed"
    ) in output.splitlines()
    assert not survived
    assert RunDir(tmp_path / "run").recorded_groups() == []


def test_what_the_tests_left_running_ends_with_the_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    root = project(
        tmp_path,
        "test_leaves.py",
        """
        import os
        import subprocess
        from pathlib import Path


        def test_leaves_a_child_behind():
            sleeper = subprocess.Popen(["sleep", "300"])
            Path(os.environ["LIFETIME_OUT"], "child").write_text(str(sleeper.pid))
        """,
    )
    env = {**base_env(tmp_path), "AZPYTEST_WORKING_DIRECTORY": str(root), "LIFETIME_OUT": str(out)}

    done = subprocess.run(
        [sys.executable, "-m", "azpytest", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )

    child = int((out / "child").read_text())
    survived = running(child)
    if survived:
        os.kill(child, signal.SIGKILL)  # a failure must not leave it running
    assert done.returncode == 0, done.stdout + done.stderr
    assert not survived
    assert (
        "azpytest: ended 1 process(es) still running in pytest's process group after it exited "
        "(started by the tests)"
    ) in done.stdout.splitlines()


def test_cleanup_never_signals_a_group_whose_leader_is_another_process(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run").create()
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        wait_until(lambda: state(other.pid) is not None, "sleep started")
        stat = Path(f"/proc/{other.pid}/stat").read_text()
        started = int(stat[stat.rfind(")") + 2 :].split()[19])
        # The same id, another start time: the id was reused since the record was written.
        run_dir.record_group(GroupRecord(other.pid, started - 1, "pytest"))
        assert (run_dir / f"{GROUP_PREFIX}{other.pid}").is_file()

        done = cleanup({**base_env(tmp_path)})

        assert done.returncode == 0, done.stderr
        assert "ended" not in done.stdout
        assert running(other.pid)
        assert run_dir.recorded_groups() == []
    finally:
        other.kill()
        other.wait()

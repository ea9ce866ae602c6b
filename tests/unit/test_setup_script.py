"""The action's first step refuses a runner it does not support, and a python-version that
is not one, at once, in one line; `--python` names the Python for the merge job."""

from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def setup(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ACTION_PATH": str(tmp_path),
    }
    return subprocess.run(
        ["bash", str(SETUP), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_windows_runner_fails_at_once_with_one_line(tmp_path: Path) -> None:
    done = setup(tmp_path, RUNNER_OS="Windows")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "::error title=azpytest: unsupported runner::azpytest runs on Linux and macOS runners; this job "
        "runs on Windows. Use runs-on: ubuntu-latest (or a Linux self-hosted runner)."
    ]
    assert not any(tmp_path.iterdir())  # nothing was set up


def test_missing_python_version_is_named(tmp_path: Path) -> None:
    done = setup(tmp_path, RUNNER_OS="Linux", AZPYTEST_PYTHON_VERSION="3.99")
    assert done.returncode == 2  # bad input: the runner has no such Python
    assert done.stdout.splitlines() == [
        "::error title=azpytest: bad input::python-version: python3.99 is not on the runner's "
        "PATH. Install it first (actions/setup-python) or leave python-version empty to use "
        "python3."
    ]


def test_the_merge_jobs_python_is_the_runners_python3(tmp_path: Path) -> None:
    done = setup(tmp_path, "--python", RUNNER_OS="Linux", AZPYTEST_PYTHON_VERSION=" ")
    assert done.returncode == 0, done.stdout + done.stderr
    python3 = subprocess.run(
        ["bash", "-c", "command -v python3"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == python3.stdout
    assert not any(tmp_path.iterdir())  # nothing was set up


def test_the_merge_jobs_python_refuses_a_python_version_that_is_not_one(tmp_path: Path) -> None:
    done = setup(
        tmp_path, "--python", RUNNER_OS="Linux", AZPYTEST_PYTHON_VERSION="3.12\n::error::boom"
    )
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "::error title=azpytest: bad input::python-version: '3.12?::error::boom' is not a Python "
        "version like 3.12. Write python-version: '3.12' (a python3.12 on PATH, as "
        "actions/setup-python puts it) or leave it empty to use python3."
    ]

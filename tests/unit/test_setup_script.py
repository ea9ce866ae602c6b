"""The action's first step refuses a runner it does not support, at once, in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ACTION_PATH": str(tmp_path),
    }
    return subprocess.run(
        ["bash", str(SETUP)],
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

"""The suite's own shell-outs to the az CLI work under `azpytest run`: an `az` shim first on
the tests' PATH logs az in through the token broker on first use (once, however many tests
call it at once), in a private config folder that cleanup removes; a suite that never calls
az makes no az login at all (issue 15, item 4)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azpytest_sandbox import Sandbox


def test_tests_shelling_out_to_az_work(
    sandbox: Sandbox, actions_step: Callable[..., Any], tmp_path: Path, az_cli: str
) -> None:
    az = az_cli
    project = tmp_path / "suite"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "tests" / "test_az.py").write_text(
        textwrap.dedent("""
        import subprocess

        def test_secret_through_az():
            out = subprocess.run(["az", "keyvault", "secret", "show", "--vault-name", "kv-azpytest",
                                  "--name", "pg-host", "--query", "value", "-o", "tsv"],
                                 capture_output=True, text=True, check=True)
            assert out.stdout.strip() == "127.0.0.1"
    """)
    )
    result = actions_step(
        sandbox,
        "run",
        env={
            "AZPYTEST_TENANT_ID": sandbox.env["AZURE_TENANT_ID"],
            "AZPYTEST_CLIENT_ID": sandbox.env["AZURE_CLIENT_ID"],
            "AZPYTEST_SUBSCRIPTION_ID": sandbox.env["AZURE_SUBSCRIPTION_ID"],
            "AZPYTEST_WORKING_DIRECTORY": str(project),
            "PATH": f"{Path(az).parent}:{os.environ['PATH']}",
        },
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "azpytest: az: logs in through the token broker on first use" in result.stdout
    run_dir = result.runner_temp / "azpytest" / "12345678901-1-test"
    assert (run_dir / "az").is_dir()
    cleanup = actions_step(
        sandbox,
        "cleanup",
        env={
            "AZPYTEST_TENANT_ID": sandbox.env["AZURE_TENANT_ID"],
            "AZPYTEST_CLIENT_ID": sandbox.env["AZURE_CLIENT_ID"],
            "AZPYTEST_RUN_DIR": str(run_dir),
        },
    )
    assert cleanup.returncode == 0
    assert not (run_dir / "az").exists()


def suite(tmp_path: Path, tests: str, ini: str = "") -> Path:
    project = tmp_path / "suite"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text(f"[pytest]\n{ini}")
    (project / "tests" / "test_suite.py").write_text(textwrap.dedent(tests))
    return project


def run_env(sandbox: Sandbox, project: Path, az: str) -> dict[str, str]:
    return {
        "AZPYTEST_SUBSCRIPTION_ID": sandbox.env["AZURE_SUBSCRIPTION_ID"],
        "AZPYTEST_WORKING_DIRECTORY": str(project),
        "PATH": f"{Path(az).parent}:{os.environ['PATH']}",
    }


def az_logins(sandbox: Sandbox) -> int:
    """`az login` lists the principal's subscriptions: ARM's GET /subscriptions."""
    return len(sandbox.log.select(service="arm", method="GET", path_prefix="/subscriptions?"))


def test_a_suite_that_never_calls_az_makes_no_az_login(
    sandbox: Sandbox, actions_step: Callable[..., Any], tmp_path: Path, az_cli: str
) -> None:
    project = suite(tmp_path, "def test_no_az():\n    assert True\n")
    result = actions_step(sandbox, "run", env=run_env(sandbox, project, az_cli), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "azpytest: az: logs in through the token broker on first use" in result.stdout
    run_dir = result.runner_temp / "azpytest" / "12345678901-1-test"
    assert (run_dir / "bin" / "az").is_file()
    assert az_logins(sandbox) == 0
    assert sandbox.log.select(service="arm") == []
    assert not (run_dir / "az" / ".azpytest-login").exists()


def test_tests_calling_az_at_once_share_one_login(
    sandbox: Sandbox, actions_step: Callable[..., Any], tmp_path: Path, az_cli: str
) -> None:
    tests = """
        import subprocess

        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_az_account(n):
            out = subprocess.run(["az", "account", "show", "--query", "id", "-o", "tsv"],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "c0ffee00-1234-4abc-8def-0123456789ab"
    """
    project = suite(tmp_path, tests, ini="addopts = --numprocesses=4\n")
    result = actions_step(sandbox, "run", env=run_env(sandbox, project, az_cli), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout
    assert az_logins(sandbox) == 1


def test_a_failed_az_login_is_said_once_and_az_runs_on_its_own_config(
    sandbox: Sandbox, actions_step: Callable[..., Any], tmp_path: Path, az_cli: str
) -> None:
    """az's login through the broker fails (the job's client id is one the sandbox's Entra
    does not know): said once, on az's stderr, and az runs on the runner's own config."""
    tests = """
        import os
        import subprocess

        def test_az_version():
            out = subprocess.run(["az", "account", "show"], capture_output=True, text=True,
                                 timeout=120)
            assert "azpytest: az: left alone (az login --identity through the token broker " \
                "failed: " in out.stderr
            # az ran on the config it had before azpytest: not logged in there.
            assert "az login" in out.stderr
            again = subprocess.run(["az", "account", "show"], capture_output=True, text=True,
                                   timeout=120)
            assert "azpytest: az:" not in again.stderr
    """
    project = suite(tmp_path, tests)
    env = run_env(sandbox, project, az_cli)
    env["AZURE_CONFIG_DIR"] = str(tmp_path / "runner-az")  # the runner's own az, logged out
    env["AZPYTEST_CLIENT_ID"] = "00000000-0000-4000-8000-000000000000"
    result = actions_step(sandbox, "run", env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout

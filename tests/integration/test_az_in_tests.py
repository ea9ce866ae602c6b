"""The suite's own shell-outs to the az CLI work under `azpytest run`: az is logged in through
the token broker, in a private config folder that cleanup removes."""

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
    assert "azpytest: az: logged in through the token broker" in result.stdout
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

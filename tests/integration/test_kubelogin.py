"""The kubelogin stand-in: a kubeconfig exactly as ARM returns it (exec: kubelogin get-token)
works with kubectl and no kubelogin binary, renewing tokens from the job's credential."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml
from azure.identity import ClientAssertionCredential

from azpytest.kube import install_kubelogin, kubelogin_main
from azpytest.rundir import RunDir
from azpytest_sandbox import Sandbox

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
CLUSTER = (
    "/subscriptions/{sub}/resourceGroups/rg-azpytest/providers/"
    "Microsoft.ContainerService/managedClusters/aks-azpytest"
)


def arm_kubeconfig(sandbox: Sandbox, folder: Path) -> Path:
    """The user kubeconfig ARM returns, unmodified (its user runs `kubelogin get-token`)."""
    sub = sandbox.env["AZURE_SUBSCRIPTION_ID"]
    credential = ClientAssertionCredential(
        sandbox.env["AZURE_TENANT_ID"],
        sandbox.env["AZURE_CLIENT_ID"],
        lambda: sandbox.github.issue(),
    )
    token = credential.get_token("https://management.azure.com/.default").token
    answer = requests.post(
        f"https://management.azure.com{CLUSTER.format(sub=sub)}/listClusterUserCredential"
        "?api-version=2025-10-01",
        headers={"Authorization": f"Bearer {token}"},
        proxies={"https": sandbox.env["HTTPS_PROXY"]},
        verify=sandbox.env["REQUESTS_CA_BUNDLE"],
        timeout=30,
    )
    answer.raise_for_status()
    text = base64.b64decode(answer.json()["kubeconfigs"][0]["value"])
    assert yaml.safe_load(text)["users"][0]["user"]["exec"]["command"] == "kubelogin"
    path = folder / "config"
    path.write_bytes(text)
    return path


def step_env(sandbox: Sandbox, folder: Path, kubeconfig: Path) -> dict[str, str]:
    bin_dir = install_kubelogin(RunDir(folder), "always", {})
    assert bin_dir is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZPYTEST_", "KUBE"))}
    env.update(sandbox.env)
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(folder),
            "PATH": f"{bin_dir}:/usr/bin:/bin",
        }
    )
    return env


@pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed here (apt-get install kubectl)"
)
def test_kubectl_with_the_unmodified_arm_kubeconfig(sandbox_env: Sandbox, tmp_path: Path) -> None:
    sandbox = sandbox_env
    env = step_env(sandbox, tmp_path, arm_kubeconfig(sandbox, tmp_path))
    assert shutil.which("kubelogin", path=env["PATH"]) == str(tmp_path / "bin" / "kubelogin")
    done = subprocess.run(
        [KUBECTL, "get", "ns", "-o", "name", "--request-timeout=20s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "namespace/kube-system" in done.stdout.splitlines()


@pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed here (apt-get install kubectl)"
)
def test_twenty_seconds_of_kubectl_with_five_second_tokens(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox], tmp_path: Path
) -> None:
    sandbox = use_sandbox(make_sandbox({"token_lifetime_s": 5}))
    env = step_env(sandbox, tmp_path, arm_kubeconfig(sandbox, tmp_path))
    calls = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = subprocess.run(
            [KUBECTL, "get", "ns", "default", "-o", "name", "--request-timeout=20s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        calls += 1
    assert calls >= 3
    tokens = sandbox.log.select(service="entra", method="POST")
    assert len(tokens) >= calls and all(e.status == 200 for e in tokens)
    assert all(e.status == 200 for e in sandbox.log.select(service="kube"))


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        (None, "client.authentication.k8s.io/v1beta1"),
        (
            '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}',
            "client.authentication.k8s.io/v1",
        ),
    ],
)
def test_get_token_answers_the_api_version_asked(
    sandbox: Sandbox, tmp_path: Path, asked: str | None, answered: str
) -> None:
    env = step_env(sandbox, tmp_path, tmp_path / "unused")
    if asked:
        env["KUBERNETES_EXEC_INFO"] = asked
    done = subprocess.run(
        [
            "kubelogin",
            "get-token",
            "--environment",
            "AzurePublicCloud",
            "--server-id",
            "6dae42f8-4368-4678-94ff-3960e28e3630",
            "--client-id",
            "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
            "--tenant-id",
            sandbox.env["AZURE_TENANT_ID"],
            "--login",
            "devicecode",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["kind"], answer["apiVersion"]) == ("ExecCredential", answered)
    assert answer["status"]["token"].startswith("eyJ")


def test_other_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert kubelogin_main(["convert-kubeconfig", "-l", "azurecli"]) == 0
    assert "nothing to convert" in capsys.readouterr().err
    assert kubelogin_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("kubelogin stand-in from azpytest ")
    assert kubelogin_main(["remove-tokens"]) == 2
    assert capsys.readouterr().err == (
        "kubelogin (azpytest stand-in): error: remove-tokens is not supported: this is azpytest's "
        "stand-in for kubelogin, which answers get-token and convert-kubeconfig only\n"
    )


def test_auto_leaves_a_real_kubelogin_alone(tmp_path: Path) -> None:
    real = tmp_path / "tools"
    real.mkdir()
    (real / "kubelogin").write_text("#!/bin/sh\necho real kubelogin\n")
    (real / "kubelogin").chmod(0o755)
    assert install_kubelogin(RunDir(tmp_path / "run"), "auto", {"PATH": f"{real}:/usr/bin"}) is None
    assert not (tmp_path / "run" / "bin").exists()
    assert (
        install_kubelogin(RunDir(tmp_path / "run"), "auto", {"PATH": "/usr/bin:/bin"})
        == tmp_path / "run" / "bin"
    )
    assert install_kubelogin(RunDir(tmp_path / "other"), "never", {"PATH": "/usr/bin:/bin"}) is None

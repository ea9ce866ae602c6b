"""The kubeconfig rewrite and the kube-token command's contract, without a sandbox."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from azpytest import cli, kube, kubetoken
from azpytest.github import Workflow
from azpytest.settings import Settings, load

T = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
C = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
SERVER = "6dae42f8-4368-4678-94ff-3960e28e3630"
OTHER_SERVER = "11111111-2222-4333-8444-555555555555"


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the checkout


def settings(**env: str) -> Settings:
    return load({}, {"AZURE_TENANT_ID": T, "AZURE_CLIENT_ID": C, **env})


def kubeconfig(*users: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://c:443"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u0"}}],
        "current-context": "c",
        "users": [{"name": f"u{i}", "user": user} for i, user in enumerate(users)],
    }


def kubelogin(*args: str, command: str = "kubelogin") -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": command,
                     "args": list(args), "env": None}}  # fmt: skip


@pytest.mark.parametrize(
    ("user", "server_id"),
    [
        (
            kubelogin("get-token", "--server-id", OTHER_SERVER, "--login", "devicecode"),
            OTHER_SERVER,
        ),
        (kubelogin("get-token", f"--server-id={OTHER_SERVER}"), OTHER_SERVER),
        (kubelogin("get-token", command="/usr/local/bin/kubelogin"), SERVER),
        (
            kubelogin("get-token", "--server-id", OTHER_SERVER, command="C:\\bin\\kubelogin.exe"),
            OTHER_SERVER,
        ),
        (
            {"auth-provider": {"name": "azure", "config": {"apiserver-id": OTHER_SERVER}}},
            OTHER_SERVER,
        ),
    ],
    ids=["kubelogin", "equals-form", "path-default-server", "windows", "legacy-auth-provider"],
)
def test_kubelogin_users_become_kube_token(user: dict[str, Any], server_id: str) -> None:
    result, notes = kube.replace_kubelogin(kubeconfig(user), settings())

    assert notes == []
    [entry] = result["users"]
    plugin = entry["user"]["exec"]
    assert set(entry["user"]) == {"exec"}
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1"
    assert plugin["interactiveMode"] == "Never"
    args = plugin["args"]
    assert args[args.index("-m") :] == [
        "-m", "azpytest", "kube-token", "--server-id", server_id,
        "--tenant-id", T, "--client-id", C, "--cloud", "AzureCloud",
    ]  # fmt: skip
    # Everything but the users is ARM's.
    assert {k: v for k, v in result.items() if k != "users"} == {
        k: v for k, v in kubeconfig(user).items() if k != "users"
    }


def test_the_exec_carries_the_cloud_and_a_custom_audience_but_no_missing_ids() -> None:
    loaded = load({}, {"AZPYTEST_CLOUD": "AzureUSGovernment", "AZPYTEST_AUDIENCE": "api://x"})
    args = kube.kube_token_user(SERVER, loaded)["exec"]["args"]
    assert args[args.index("--server-id") :] == [
        "--server-id", SERVER, "--cloud", "AzureUSGovernment", "--audience", "api://x",
    ]  # fmt: skip


def test_other_users_are_kept_and_a_foreign_exec_is_noted() -> None:
    cert = {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}
    other = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}
    result, notes = kube.replace_kubelogin(kubeconfig(cert, other), settings())
    assert [u["user"] for u in result["users"]] == [cert, other]
    assert notes == [
        "kubeconfig user 'u1' runs 'aws', which azpytest does not replace: it must be "
        "installed where kubectl runs"
    ]


def test_credentials_are_masked_as_written_and_decoded() -> None:
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkR2xq7Tn3v\n-----END EC PRIVATE KEY-----\n"
    key = base64.b64encode(pem.encode()).decode()
    out = io.StringIO()
    workflow = Workflow({"GITHUB_ACTIONS": "true"}, out=out)
    kube.mask_credentials(kubeconfig({"client-key-data": key, "token": "static-token-1"}), workflow)
    masks = [line.removeprefix("::add-mask::") for line in out.getvalue().splitlines()]
    assert masks[0] == key  # the form in the file first
    assert {"static-token-1", "MHcCAQEEIBkR2xq7Tn3v", "-----BEGIN EC PRIVATE KEY-----"} <= set(
        masks
    )


@pytest.mark.parametrize(
    ("exec_info", "expected"),
    [
        (None, "client.authentication.k8s.io/v1"),
        ("", "client.authentication.k8s.io/v1"),
        ('{"kind": "ExecCredential"}', "client.authentication.k8s.io/v1"),
        (
            '{"apiVersion": "client.authentication.k8s.io/v1beta1"}',
            "client.authentication.k8s.io/v1beta1",
        ),
    ],
)
def test_exec_api_version(exec_info: str | None, expected: str) -> None:
    assert kubetoken.exec_api_version(exec_info) == expected


def test_exec_credential_timestamp_is_rfc3339_utc() -> None:
    credential = kubetoken.exec_credential("client.authentication.k8s.io/v1", "t", 1_800_000_000)
    assert credential == {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1",
        "spec": {"interactive": False},
        "status": {"token": "t", "expirationTimestamp": "2027-01-15T08:00:00Z"},
    }


@pytest.mark.parametrize(
    ("argv", "exec_info", "message"),
    [
        ([], None, "the following arguments are required: --server-id"),
        (
            ["--server-id", SERVER, "--login", "devicecode"],
            None,
            "unrecognized arguments: --login devicecode",
        ),
        (["--server-id", SERVER], "{not json", "KUBERNETES_EXEC_INFO is not JSON"),
        (
            ["--server-id", SERVER],
            '{"apiVersion": "client.authentication.k8s.io/v1alpha1"}',
            "KUBERNETES_EXEC_INFO asks for client.authentication.k8s.io/v1alpha1; kube-token "
            "answers client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1",
        ),
        (
            ["--server-id", SERVER, "--cloud", "Mars"],
            None,
            "cloud: unknown cloud 'Mars'; use one of AzureCloud, AzureUSGovernment, AzureChinaCloud",
        ),
    ],
    ids=["no-server-id", "kubelogin-flag", "bad-exec-info", "old-api-version", "bad-cloud"],
)
def test_bad_input_exits_2_with_one_line_and_no_stdout(
    argv: list[str],
    exec_info: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if exec_info is None:
        monkeypatch.delenv("KUBERNETES_EXEC_INFO", raising=False)
    else:
        monkeypatch.setenv("KUBERNETES_EXEC_INFO", exec_info)
    assert cli.main(["kube-token", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"azpytest kube-token: error: {message}\n"


def test_inputs_only_prepare_reads_cannot_fail_kube_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A secrets input without a vault is prepare's error; kube-token gets past settings and
    # fails only later, at the credential (no OIDC request variables here).
    monkeypatch.setenv("AZPYTEST_SECRETS", "- pg-*")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("KUBERNETES_EXEC_INFO", raising=False)
    code = cli.main(["kube-token", "--server-id", SERVER, "--tenant-id", T, "--client-id", C])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("azpytest kube-token: GitHub gave this job no OIDC token")
    assert "::" not in err


def test_the_fast_path_keys_its_cache_on_the_inputs_kube_token_reads() -> None:
    from azpytest.inputs import BY_NAME

    for name, variables in kubetoken.TOKEN_INPUTS.items():
        assert variables == BY_NAME[name].variables, name
    # debug and timeout change how the full command works, not whose token it gets.
    assert set(kubetoken.TOKEN_INPUTS) == kube._TOKEN_INPUTS - {"debug", "timeout"}


def test_the_fast_path_knows_the_mask_channel_by_its_variable() -> None:
    from azpytest import maskchannel

    assert kubetoken.MASK_CHANNEL_VARIABLE == maskchannel.ENV_VARIABLE

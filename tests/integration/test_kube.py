"""The AKS kubeconfig of `azpytest prepare` and its exec plugin `azpytest kube-token`, against
the sandbox, with the real kubernetes client and /usr/bin/kubectl: no token in the file, a
fresh Entra token each time one is needed, keys masked, and a diagnosis for every failure."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from azpytest.github import escape_data
from azpytest.identity import unverified_claims
from azpytest_sandbox import Sandbox
from azpytest_sandbox.scenario import AKS_SERVER_APP, default_scenario_data

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CLIENT = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
OBJECT = "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e"
SUB = "c0ffee00-1234-4abc-8def-0123456789ab"
RG = "rg-azpytest"
CLUSTER = "aks-azpytest"
AKS = {"AZPYTEST_AKS_RESOURCE_GROUP": RG, "AZPYTEST_AKS_CLUSTER": CLUSTER}
RUN_DIR = ("azpytest", "12345678901-1-test")
KUBECTL = Path("/usr/bin/kubectl")
needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="/usr/bin/kubectl is not installed")

Step = Callable[..., Any]


def cluster_id(name: str = CLUSTER, group: str = RG) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/"
        f"Microsoft.ContainerService/managedClusters/{name}"
    )


def world(grants: list[dict[str, str]], clusters: list[dict[str, Any]] | None = None) -> Any:
    """The default world with these role grants on the subscription (and these clusters)."""
    subscriptions = default_scenario_data()["subscriptions"]
    subscriptions[0]["grants"] = grants
    if clusters is not None:
        subscriptions[0]["resource_groups"][0]["clusters"] = clusters
    return {"subscriptions": subscriptions}


def admin_world() -> Any:
    return world(
        [{"principal": "azpytest-ci", "role": "Azure Kubernetes Service Cluster Admin Role"}]
    )


def local_world() -> Any:
    """A cluster without Entra integration (local accounts), the job a cluster user of it."""
    grant = {
        "principal": "azpytest-ci",
        "role": "Azure Kubernetes Service Cluster User Role",
        "scope": cluster_id("aks-local"),
    }
    return world([grant], clusters=[{"name": CLUSTER}, {"name": "aks-local", "entra": False}])


def step_env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    """What a later step of the job has: the runner's variables, never AZPYTEST_ inputs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "RUNNER_"))
        and k != "KUBECONFIG"
    }
    return {**env, **sandbox.env, "GITHUB_ACTIONS": "true", **extra}


def kubectl(
    kubeconfig: Path, env: dict[str, str], home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # HOME keeps kubectl's discovery cache out of the real one; no stdin, so it never prompts.
    return subprocess.run(
        [str(KUBECTL), "--request-timeout=20s", *args],
        env={**env, "KUBECONFIG": str(kubeconfig), "HOME": str(home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def kube_token(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azpytest", "kube-token", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def in_step(
    monkeypatch: pytest.MonkeyPatch, use_sandbox: Callable[[Sandbox], Sandbox]
) -> Callable[[Sandbox], None]:
    """Make this process a later step of the job (the kubernetes client runs the plugin)."""

    def enter(sandbox: Sandbox) -> None:
        for name in list(os.environ):
            if name.startswith(("AZPYTEST_", "GITHUB_", "ACTIONS_")) or name == "KUBECONFIG":
                monkeypatch.delenv(name)
        use_sandbox(sandbox)
        monkeypatch.setenv("GITHUB_ACTIONS", "true")

    return enter


@pytest.fixture
def python_client() -> Iterator[Callable[[Path], k8s.CoreV1Api]]:
    """CoreV1Api from a kubeconfig file, as tests load it (without touching the default)."""
    made: list[k8s.ApiClient] = []

    def make(path: Path) -> k8s.CoreV1Api:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(str(path), client_configuration=configuration)
        api_client = k8s.ApiClient(configuration)
        made.append(api_client)
        return k8s.CoreV1Api(api_client)

    yield make
    for api_client in made:
        api_client.close()


def name_of(namespace: k8s.V1Namespace) -> str | None:
    return namespace.metadata.name if namespace.metadata else None


def prepared_kubeconfig(result: Any) -> Path:
    assert result.returncode == 0, result.stderr + result.stdout
    return Path(result.env_file["KUBECONFIG"])


# ------------------------------------------------------------------ the file prepare writes


def test_prepare_writes_a_kubeconfig_that_runs_kube_token_and_holds_no_token(
    sandbox: Sandbox, actions_step: Step
) -> None:
    result = actions_step(sandbox, "prepare", env=AKS)
    path = prepared_kubeconfig(result)

    assert path == result.runner_temp.joinpath(*RUN_DIR, "kubeconfig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "eyJ" not in text
    assert "eyJ" not in result.written()  # nor in anything else the step left behind
    kubeconfig = yaml.safe_load(text)
    server = sandbox.clusters[(SUB, RG, CLUSTER)]
    # Clusters and contexts as ARM returned them.
    assert kubeconfig["clusters"] == [
        {
            "cluster": {
                "certificate-authority-data": base64.b64encode(server.ca_pem).decode(),
                "server": server.url,
            },
            "name": CLUSTER,
        }
    ]
    user_name = f"clusterUser_{RG}_{CLUSTER}"
    assert kubeconfig["contexts"] == [
        {"context": {"cluster": CLUSTER, "user": user_name}, "name": CLUSTER}
    ]
    assert kubeconfig["current-context"] == CLUSTER
    [user] = kubeconfig["users"]
    assert user["name"] == user_name
    assert set(user["user"]) == {"exec"}
    plugin = user["user"]["exec"]
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1"
    assert plugin["interactiveMode"] == "Never"
    assert plugin["provideClusterInfo"] is False
    assert plugin["command"] == os.path.abspath(sys.executable)
    args = plugin["args"]
    assert args[args.index("-m") :] == [
        "-m", "azpytest", "kube-token",
        "--server-id", AKS_SERVER_APP,
        "--tenant-id", TENANT,
        "--client-id", CLIENT,
        "--cloud", "AzureCloud",
    ]  # fmt: skip
    # Identifiers only: the run folder, where invocations share a cached token.
    assert plugin["env"] == [{"name": "AZPYTEST_RUN_DIR", "value": str(path.parent)}]

    # prepare exported it and recorded it; ARM was asked once, as the job's app.
    prepared = json.loads(path.with_name("prepared.json").read_text())
    assert prepared["kubeconfig"] == str(path)
    [post] = sandbox.log.select(service="arm", method="POST")
    assert (
        post.path == f"{cluster_id()}/listClusterUserCredential?api-version=2025-10-01&format=exec"
    )
    assert (post.status, post.who) == (200, CLIENT)
    assert f"azpytest: kubeconfig of AKS cluster {CLUSTER} (user credential): {path}" in (
        result.stdout
    )


@needs_kubectl
def test_the_cluster_is_exported_under_the_names_existing_suites_read(
    sandbox: Sandbox, actions_step: Step
) -> None:
    # A job that gave the subscription as an input only (the sandbox sets the variable).
    job = {**AKS, "AZURE_SUBSCRIPTION_ID": "", "AZPYTEST_SUBSCRIPTION_ID": SUB}
    result = actions_step(sandbox, "prepare", env=job)
    prepared_kubeconfig(result)
    assert result.env_file["AZURE_SUBSCRIPTION_ID"] == SUB
    assert result.env_file["AZURE_RESOURCE_GROUP"] == RG
    assert result.env_file["AZURE_AKS_CLUSTER_NAME"] == CLUSTER
    # A value the job set stays the job's.
    result = actions_step(sandbox, "prepare", env={**AKS, "AZURE_RESOURCE_GROUP": "rg-mine"})
    prepared_kubeconfig(result)
    assert "AZURE_RESOURCE_GROUP" not in result.env_file
    assert result.env_file["AZURE_AKS_CLUSTER_NAME"] == CLUSTER


def test_kubectl_lists_namespaces_with_the_kubeconfig(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    path = prepared_kubeconfig(actions_step(sandbox, "prepare", env=AKS))
    before = len(sandbox.log.select(service="entra", method="POST"))

    listed = kubectl(path, step_env(sandbox), tmp_path, "get", "ns")

    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert {"default", "kube-system"} <= names
    assert "eyJ" not in listed.stdout + listed.stderr
    kube = sandbox.log.select(service="kube")
    assert kube and {(e.status, e.who) for e in kube} == {(200, CLIENT)}
    # kube-token asked Entra (and GitHub) itself: kubectl ran it.
    assert len(sandbox.log.select(service="entra", method="POST")) > before


def test_python_client_lists_namespaces_with_the_kubeconfig(
    sandbox: Sandbox,
    actions_step: Step,
    in_step: Callable[[Sandbox], None],
    python_client: Callable[[Path], k8s.CoreV1Api],
) -> None:
    path = prepared_kubeconfig(actions_step(sandbox, "prepare", env=AKS))
    in_step(sandbox)

    names = {name_of(ns) for ns in python_client(path).list_namespace().items}

    assert {"default", "kube-system"} <= names
    assert sandbox.log.select(service="kube")[-1].who == CLIENT


def test_short_lived_tokens_are_renewed_for_the_python_client(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    in_step: Callable[[Sandbox], None],
    python_client: Callable[[Path], k8s.CoreV1Api],
) -> None:
    sandbox = make_sandbox({"token_lifetime_s": 5})
    path = prepared_kubeconfig(actions_step(sandbox, "prepare", env=AKS))
    in_step(sandbox)
    core = python_client(path)  # one client: the exec plugin is run again when it must be
    tokens_before = len(sandbox.log.select(service="entra", method="POST"))

    calls = 0
    started = time.monotonic()
    while time.monotonic() - started < 20:  # four lifetimes of a token
        assert "kube-system" in {name_of(ns) for ns in core.list_namespace().items}
        calls += 1

    kube = sandbox.log.select(service="kube")
    assert len(kube) == calls and {e.status for e in kube} == {200}
    # Each token lives 5 s, so 20 s of calls needed at least four of them.
    assert len(sandbox.log.select(service="entra", method="POST")) - tokens_before >= 4


# ------------------------------------------------------------------ client certificates


@pytest.mark.parametrize(
    ("scenario", "env", "context"),
    [
        (admin_world(), {**AKS, "AZPYTEST_AKS_ADMIN": "true"}, f"{CLUSTER}-admin"),
        (
            local_world(),
            {"AZPYTEST_AKS_RESOURCE_GROUP": RG, "AZPYTEST_AKS_CLUSTER": "aks-local"},
            "aks-local",
        ),
    ],
    ids=["admin-credential", "cluster-without-entra"],
)
def test_client_certificate_user_is_kept_and_its_key_masked_first(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    scenario: Any,
    env: dict[str, str],
    context: str,
) -> None:
    sandbox = make_sandbox(scenario)
    result = actions_step(sandbox, "prepare", env=env)
    path = prepared_kubeconfig(result)

    kubeconfig = yaml.safe_load(path.read_text())
    assert kubeconfig["current-context"] == context
    [user] = kubeconfig["users"]
    assert set(user["user"]) == {"client-certificate-data", "client-key-data"}
    key_b64 = user["user"]["client-key-data"]
    key_pem = base64.b64decode(key_b64).decode()
    assert "PRIVATE KEY" in key_pem

    lines = result.stdout.splitlines()
    mask = lines.index(f"::add-mask::{key_b64}")
    # The key is masked before any line of ours after the credential choice (which precedes
    # the ARM request), and each line of the PEM too.
    others = [
        i
        for i, line in enumerate(lines)
        if not line.startswith("::add-mask::") and not line.startswith("azpytest: credential:")
    ]
    assert others and mask < min(others)
    masks = result.commands("add-mask")
    assert escape_data(key_pem) in masks
    assert all(line in masks for line in key_pem.splitlines() if len(line) >= 4)
    assert escape_data(base64.b64decode(user["user"]["client-certificate-data"]).decode()) in masks
    # Only the 0600 kubeconfig holds the key.
    shown = "\n".join([*(line for line in lines if not line.startswith("::add-mask::"))])
    for leak in (key_b64, *key_pem.splitlines()[1:-1]):
        assert leak not in shown + result.stderr + result.summary
        assert leak not in json.dumps(result.env_file)
    assert f"(mode 0600); user {user['name']}: client certificate (key masked)" in result.stdout


@needs_kubectl
def test_kubectl_uses_the_admin_client_certificate(
    make_sandbox: Callable[..., Sandbox], actions_step: Step, tmp_path: Path
) -> None:
    sandbox = make_sandbox(admin_world())
    path = prepared_kubeconfig(
        actions_step(sandbox, "prepare", env={**AKS, "AZPYTEST_AKS_ADMIN": "true"})
    )
    listed = kubectl(path, step_env(sandbox), tmp_path, "get", "ns", "kube-system")
    assert listed.returncode == 0, listed.stderr
    assert sandbox.log.select(service="kube")[-1].who == "masterclient"
    [post] = sandbox.log.select(service="arm", method="POST")
    assert post.path == f"{cluster_id()}/listClusterAdminCredential?api-version=2025-10-01"


# ------------------------------------------------------------------ ARM's refusals


@pytest.mark.parametrize(
    ("admin", "role", "action"),
    [
        (False, "Azure Kubernetes Service Cluster User Role", "listClusterUserCredential"),
        (True, "Azure Kubernetes Service Cluster Admin Role", "listClusterAdminCredential"),
    ],
    ids=["user", "admin"],
)
def test_principal_without_the_role_is_told_which_role_to_grant(
    make_sandbox: Callable[..., Sandbox], actions_step: Step, admin: bool, role: str, action: str
) -> None:
    # A reader of the subscription; the admin case keeps the default cluster user role.
    grants = [{"principal": "azpytest-ci", "role": "Reader"}]
    if admin:
        grants.append(
            {"principal": "azpytest-ci", "role": "Azure Kubernetes Service Cluster User Role"}
        )
    sandbox = make_sandbox(world(grants))
    env = {**AKS, "AZPYTEST_AKS_ADMIN": "true"} if admin else AKS
    result = actions_step(sandbox, "prepare", env=env)

    assert result.returncode == 1
    kind = "admin" if admin else "user"
    what = (
        f"ARM refused the {kind} credentials of AKS cluster {CLUSTER} to this job's identity "
        "(403 AuthorizationFailed)."
    )
    assert result.commands("error")[0].startswith(escape_data(what))
    summary = result.summary
    assert f"### ❌ {what}" in summary
    assert (
        f"**Likely cause:** the identity (client id {CLIENT}, object id {OBJECT}) has no role "
        f"granting Microsoft.ContainerService/managedClusters/{action}/action on the cluster; "
        f"'{role}' (or Contributor/Owner) does."
    ) in summary
    assert f"| client id | `{CLIENT}` |" in summary
    assert f"| object id | `{OBJECT}` |" in summary
    assert f"| scope | `{cluster_id()}` |" in summary
    assert (
        f'az role assignment create --role "{role}" --assignee-object-id {OBJECT} '
        f"--assignee-principal-type ServicePrincipal --scope {cluster_id()}\n"
    ) in summary
    assert "KUBECONFIG" not in result.env_file
    assert not result.runner_temp.joinpath(*RUN_DIR, "kubeconfig").exists()


@pytest.mark.parametrize(
    ("env", "what", "hint"),
    [
        (
            {"AZPYTEST_AKS_CLUSTER": "aks-nope"},
            f"Resource group {RG} has no AKS cluster 'aks-nope' (404 ResourceNotFound).",
            "aks-cluster is misspelt",
        ),
        (
            {"AZPYTEST_AKS_RESOURCE_GROUP": "rg-nope"},
            f"Subscription {SUB} has no resource group 'rg-nope' (404 ResourceGroupNotFound).",
            "aks-resource-group is misspelt",
        ),
        (
            {"AZURE_SUBSCRIPTION_ID": "00000000-0000-4000-8000-000000000000"},
            "ARM knows no subscription 00000000-0000-4000-8000-000000000000 "
            "(404 SubscriptionNotFound).",
            "az account list",
        ),
    ],
    ids=["cluster", "resource-group", "subscription"],
)
def test_unknown_cluster_names_what_is_missing(
    sandbox: Sandbox, actions_step: Step, env: dict[str, str], what: str, hint: str
) -> None:
    result = actions_step(sandbox, "prepare", env={**AKS, **env})

    assert result.returncode == 1
    assert f"### ❌ {what}" in result.summary
    assert hint in result.summary
    assert "az aks list" in result.summary or "az account list" in result.summary
    assert "| ARM said | `" in result.summary


def test_throttled_arm_is_retried_after_the_time_it_asks(
    sandbox: Sandbox, actions_step: Step
) -> None:
    sandbox.add_fault(service="arm", method="POST", status=429, times=2, retry_after=1)
    result = actions_step(sandbox, "prepare", env=AKS)

    prepared_kubeconfig(result)
    posts = sandbox.log.select(service="arm", method="POST")
    assert [e.status for e in posts] == [429, 429, 200]
    assert posts[2].time - posts[0].time >= 2  # Retry-After: 1, twice


# ------------------------------------------------------------------ azpytest kube-token


def token_args() -> list[str]:
    return ["--server-id", AKS_SERVER_APP, "--tenant-id", TENANT, "--client-id", CLIENT]


@pytest.mark.parametrize(
    ("exec_info", "api_version"),
    [
        (None, "client.authentication.k8s.io/v1"),
        (
            {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"},
            "client.authentication.k8s.io/v1",
        ),
        (
            {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "kind": "ExecCredential",
                "spec": {"interactive": False},
            },
            "client.authentication.k8s.io/v1beta1",
        ),
    ],
    ids=["no-exec-info", "v1", "v1beta1"],
)
def test_kube_token_answers_in_the_api_version_asked(
    sandbox: Sandbox, exec_info: dict[str, Any] | None, api_version: str
) -> None:
    extra = {"KUBERNETES_EXEC_INFO": json.dumps(exec_info)} if exec_info else {}
    ran = kube_token(step_env(sandbox, **extra), *token_args())

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    answer = json.loads(ran.stdout)  # stdout is the ExecCredential and nothing else
    assert ran.stdout.count("\n") == 1
    assert answer["kind"] == "ExecCredential"
    assert answer["apiVersion"] == api_version
    assert answer["spec"] == {"interactive": False}
    token = answer["status"]["token"]
    claims = unverified_claims(token)
    assert claims["aud"] == AKS_SERVER_APP
    assert claims["appid"] == CLIENT
    expiry = answer["status"]["expirationTimestamp"]
    assert expiry.endswith("Z")
    stamp = dt.datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    # The credential dates the expiry from when it sent the request, a second or so before
    # Entra stamped the token: never later than the token's own exp.
    assert 0 <= claims["exp"] - int(stamp.timestamp()) <= 2


def test_kube_token_without_the_oidc_request_says_why_on_stderr(sandbox: Sandbox) -> None:
    env = step_env(sandbox)
    del env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]

    ran = kube_token(env, *token_args())

    assert ran.returncode == 1
    assert ran.stdout == ""
    assert ran.stderr.startswith(
        "azpytest kube-token: GitHub gave this job no OIDC token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL is not set).\n"
    )
    assert "id-token: write" in ran.stderr
    assert "Traceback" not in ran.stderr and "::" not in ran.stderr
    assert ran.stderr.count("GitHub gave this job no OIDC token") == 1


def test_kube_token_bad_flags_exit_2(sandbox: Sandbox) -> None:
    missing = kube_token(step_env(sandbox), "--tenant-id", TENANT)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr == (
        "azpytest kube-token: error: the following arguments are required: --server-id\n"
    )
    bad_tenant = kube_token(step_env(sandbox), "--server-id", AKS_SERVER_APP, "--tenant-id", "x y")
    assert bad_tenant.returncode == 2
    assert bad_tenant.stderr.startswith("azpytest kube-token: error: tenant-id: 'x y' is neither")


@needs_kubectl
def test_kubectl_shows_why_kube_token_failed(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    path = prepared_kubeconfig(actions_step(sandbox, "prepare", env=AKS))
    env = step_env(sandbox)
    del env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]

    listed = kubectl(path, env, tmp_path, "get", "ns")

    assert listed.returncode != 0
    assert (
        "azpytest kube-token: GitHub gave this job no OIDC token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL is not set)."
    ) in listed.stderr
    assert "id-token: write" in listed.stderr
    assert sandbox.log.select(service="kube") == []  # no request went out without a token


def test_python_client_logs_why_kube_token_failed_then_gets_401(
    sandbox: Sandbox,
    actions_step: Step,
    in_step: Callable[[Sandbox], None],
    python_client: Callable[[Path], k8s.CoreV1Api],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = prepared_kubeconfig(actions_step(sandbox, "prepare", env=AKS))
    in_step(sandbox)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL")

    with caplog.at_level(logging.ERROR):
        core = python_client(path)  # the client runs the plugin here, and only logs its failure
    with pytest.raises(ApiException) as refused:
        core.list_namespace()

    assert refused.value.status == 401
    assert (
        "exec: process returned 1. azpytest kube-token: GitHub gave this job no OIDC token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL is not set)."
    ) in caplog.text


FIXTURE_SHAPES = """
    import json
    import os
    from pathlib import Path

    from kubernetes import client


    def test_real_aks_cluster_by_key_attribute_and_as_an_api_client(real_aks_cluster):
        assert real_aks_cluster["cluster_name"] == real_aks_cluster.cluster_name == "aks-azpytest"
        assert real_aks_cluster["resource_group"] == "rg-azpytest"
        assert real_aks_cluster["subscription_id"] == os.environ["EXPECTED_SUBSCRIPTION"]
        assert set(real_aks_cluster) == {
            "subscription_id", "resource_group", "cluster_name", "managed_identity_client_id",
            "credential", "aks_client", "kube_client",
        }
        aks = real_aks_cluster["aks_client"]
        cluster = aks.managed_clusters.get("rg-azpytest", "aks-azpytest")
        kubelet = cluster.identity_profile["kubeletidentity"].client_id
        assert real_aks_cluster["managed_identity_client_id"] == kubelet
        token = real_aks_cluster["credential"].get_token("https://vault.azure.net/.default")
        assert token.token.startswith("eyJ")
        # Where azpytest's users pass it as the kubernetes ApiClient, it still is one.
        names = {n.metadata.name for n in client.CoreV1Api(real_aks_cluster).list_namespace().items}
        assert "kube-system" in names
        assert real_aks_cluster.configuration.host.startswith("https://")
        assert "eyJ" not in repr(real_aks_cluster)


    def test_ensure_kubeconfig_links_home_and_loads_the_default(ensure_kubeconfig):
        home = Path.home() / ".kube" / "config"
        assert ensure_kubeconfig == home and home.is_symlink()
        names = {n.metadata.name for n in client.CoreV1Api().list_namespace().items}
        assert "kube-system" in names
"""


def test_fixtures_in_the_shapes_suites_had_their_own_in(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    """real_aks_cluster is a mapping of the cluster's facts and still an ApiClient;
    ensure_kubeconfig, where KUBECONFIG is not set, links ~/.kube/config to the prepared
    kubeconfig for the session and puts the file that was there back."""
    prepared = actions_step(sandbox, "prepare", env=AKS)
    kubeconfig = prepared_kubeconfig(prepared)
    project = tmp_path / "suite"
    project.mkdir()
    (project / "test_shapes.py").write_text(textwrap.dedent(FIXTURE_SHAPES))
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    mine = "apiVersion: v1\nkind: Config\n# the developer's own\n"
    (home / ".kube" / "config").write_text(mine)
    env = {k: v for k, v in prepared.env_file.items() if k != "KUBECONFIG"}
    result = actions_step(
        sandbox,
        "run",
        env={
            **env,
            "AZPYTEST_WORKING_DIRECTORY": str(project),
            "HOME": str(home),
            "EXPECTED_SUBSCRIPTION": SUB,
        },
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
    assert (home / ".kube" / "config").read_text() == mine
    assert sorted(p.name for p in (home / ".kube").iterdir()) == ["config"]
    assert kubeconfig.is_file()

    # A session killed before its teardown left the link and the developer's file aside
    # (under a process id no process has): the next session puts the file back first.
    (home / ".kube" / "config").rename(home / ".kube" / "config.azpytest-backup-999999999")
    (home / ".kube" / "config").symlink_to(tmp_path / "a-run-folder-since-removed")
    again = actions_step(
        sandbox,
        "run",
        env={
            **env,
            "AZPYTEST_WORKING_DIRECTORY": str(project),
            "HOME": str(home),
            "EXPECTED_SUBSCRIPTION": SUB,
        },
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:]
    assert (home / ".kube" / "config").read_text() == mine
    assert sorted(p.name for p in (home / ".kube").iterdir()) == ["config"]

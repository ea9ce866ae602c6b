"""The sandbox's ARM and AKS API server, through the real clients: requests and azure-identity
for ARM, the kubernetes Python client and /usr/bin/kubectl for the cluster."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.identity import ClientAssertionCredential
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from azpytest_sandbox import kubeproto
from azpytest_sandbox.kubeapi import LOG_ANNOTATION, KubeAPIServer
from azpytest_sandbox.scenario import (
    AKS_SERVER_APP,
    AZURE_CLI_CLIENT_ID,
    build_scenario,
    default_scenario_data,
)
from azpytest_sandbox.server import Sandbox

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
SUB = "c0ffee00-1234-4abc-8def-0123456789ab"
RG = "rg-azpytest"
CI_CLIENT_ID = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
CI_OBJECT_ID = "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e"
# An app the default GitHub token can sign in as, with no role anywhere.
LONER_CLIENT_ID = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f"
LONER_OBJECT_ID = "9e8d7c6b-5a49-4837-a261-504f3e2d1c0b"
ARM = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
AKS_SCOPE = f"{AKS_SERVER_APP}/.default"
API_VERSION = "2025-10-01"


def cluster_id(name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
        f"Microsoft.ContainerService/managedClusters/{name}"
    )


def scenario_data() -> dict[str, Any]:
    """The default world plus a cluster without Entra (local accounts) and an app with no role.

    azpytest-ci keeps its default roles (cluster user and reader over the subscription) and
    is cluster admin of aks-local only.
    """
    data = default_scenario_data()
    data["tenants"][0]["apps"].append(
        {
            "name": "loner",
            "client_id": LONER_CLIENT_ID,
            "object_id": LONER_OBJECT_ID,
            "federated_credentials": [{"subject": "repo:octo-org/octo-repo:ref:refs/heads/main"}],
        }
    )
    subscription = data["subscriptions"][0]
    subscription["resource_groups"][0]["clusters"].append({"name": "aks-local", "entra": False})
    subscription["grants"].append(
        {
            "principal": "azpytest-ci",
            "role": "Azure Kubernetes Service Cluster Admin Role",
            "scope": cluster_id("aks-local"),
        }
    )
    return {"tenants": data["tenants"], "subscriptions": data["subscriptions"]}


@pytest.fixture(scope="module")
def aks_sandbox() -> Iterator[Sandbox]:
    with Sandbox(build_scenario(scenario_data())) as sandbox:
        yield sandbox


@pytest.fixture
def aks(aks_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The module's sandbox, with its environment set for this test."""
    for name, value in aks_sandbox.env.items():
        monkeypatch.setenv(name, value)
    return aks_sandbox


def token(sandbox: Sandbox, scope: str, client_id: str = CI_CLIENT_ID) -> str:
    """An Entra token got the product's way: a GitHub assertion traded by azure-identity."""
    credential = ClientAssertionCredential(TENANT, client_id, func=lambda: sandbox.github.issue())
    return credential.get_token(scope).token


def server(sandbox: Sandbox, name: str = "aks-azpytest") -> KubeAPIServer:
    return sandbox.clusters[(SUB, RG, name)]


def arm_post(action: str, bearer: str | None, cluster: str = "aks-azpytest", **query: str) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.post(
        f"{ARM}{cluster_id(cluster)}/{action}",
        params={"api-version": API_VERSION, **query},
        headers=headers,
        timeout=10,
    )


def kubeconfig_of(answer: requests.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()["kubeconfigs"]
    return dict(yaml.safe_load(base64.b64decode(entry["value"])))


@pytest.fixture
def ca_file(aks: Sandbox, tmp_path: Path) -> Path:
    path = tmp_path / "cluster-ca.pem"
    path.write_bytes(server(aks).ca_pem)
    return path


@pytest.fixture
def aks_token(aks: Sandbox) -> str:
    return token(aks, AKS_SCOPE)


def core_api(api_server: KubeAPIServer, ca_file: Path, bearer: str | None = None) -> k8s.CoreV1Api:
    configuration = k8s.Configuration()
    configuration.host = api_server.url
    configuration.ssl_ca_cert = str(ca_file)
    if bearer is not None:
        configuration.api_key = {"authorization": "Bearer " + bearer}
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


@pytest.fixture
def core(aks: Sandbox, ca_file: Path, aks_token: str) -> Iterator[k8s.CoreV1Api]:
    api = core_api(server(aks), ca_file, aks_token)
    yield api
    api.api_client.close()


# ------------------------------------------------------------------------------ ARM


def test_user_credential_is_the_aks_kubelogin_kubeconfig(aks: Sandbox) -> None:
    answer = arm_post("listClusterUserCredential", token(aks, ARM_SCOPE), format="exec")

    assert answer.json()["kubeconfigs"][0]["name"] == "clusterUser"
    kubeconfig = kubeconfig_of(answer)
    api_server = server(aks)
    [cluster] = kubeconfig["clusters"]
    assert cluster == {
        "name": "aks-azpytest",
        "cluster": {
            "certificate-authority-data": base64.b64encode(api_server.ca_pem).decode(),
            "server": api_server.url,
        },
    }
    user_name = f"clusterUser_{RG}_aks-azpytest"
    assert kubeconfig["contexts"] == [
        {"name": "aks-azpytest", "context": {"cluster": "aks-azpytest", "user": user_name}}
    ]
    assert kubeconfig["current-context"] == "aks-azpytest"
    [user] = kubeconfig["users"]
    assert user["name"] == user_name
    assert user["user"] == {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "kubelogin",
            "args": [
                "get-token",
                "--environment",
                "AzurePublicCloud",
                "--server-id",
                AKS_SERVER_APP,
                "--client-id",
                AZURE_CLI_CLIENT_ID,
                "--tenant-id",
                TENANT,
                "--login",
                "devicecode",
            ],
            "env": None,
            "installHint": (
                "\nkubelogin is not installed which is required to connect to AAD enabled "
                "cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n"
            ),
            "provideClusterInfo": False,
        }
    }
    assert aks.log.select(service="arm", method="POST")[-1].who == CI_CLIENT_ID


def test_legacy_format_is_the_azure_auth_provider(aks: Sandbox) -> None:
    kubeconfig = kubeconfig_of(
        arm_post("listClusterUserCredential", token(aks, ARM_SCOPE), format="azure")
    )
    assert kubeconfig["users"][0]["user"]["auth-provider"] == {
        "name": "azure",
        "config": {
            "apiserver-id": AKS_SERVER_APP,
            "client-id": AZURE_CLI_CLIENT_ID,
            "config-mode": "1",
            "environment": "AzurePublicCloud",
            "tenant-id": TENANT,
        },
    }


def test_principal_without_a_role_gets_403_authorization_failed(aks: Sandbox) -> None:
    answer = arm_post("listClusterUserCredential", token(aks, ARM_SCOPE, LONER_CLIENT_ID))

    assert answer.status_code == 403
    assert answer.json() == {
        "error": {
            "code": "AuthorizationFailed",
            "message": (
                f"The client '{LONER_CLIENT_ID}' with object id '{LONER_OBJECT_ID}' does not "
                "have authorization to perform action 'Microsoft.ContainerService/"
                "managedClusters/listClusterUserCredential/action' over scope "
                f"'{cluster_id('aks-azpytest')}' or the scope is invalid. If access was recently "
                "granted, please refresh your credentials."
            ),
        }
    }


def test_no_role_assignment_at_all_in_a_scenario_built_without_grants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = default_scenario_data()
    data["subscriptions"][0]["grants"] = []
    with Sandbox(build_scenario({"subscriptions": data["subscriptions"]})) as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        bearer = token(sandbox, ARM_SCOPE)
        answer = arm_post("listClusterUserCredential", bearer)
        listed = requests.get(
            f"{ARM}/subscriptions",
            params={"api-version": "2022-12-01"},
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=10,
        )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "AuthorizationFailed"
    # az login lists the subscriptions the principal holds a role in: none here.
    assert listed.json() == {"value": [], "count": {"type": "Total", "value": 0}}


def test_cluster_user_role_does_not_give_admin_credentials(aks: Sandbox) -> None:
    answer = arm_post("listClusterAdminCredential", token(aks, ARM_SCOPE))

    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert (
        "'Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action'"
        in error["message"]
    )


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
            "managedClusters/aks-nope/listClusterUserCredential",
            "ResourceNotFound",
            "The Resource 'Microsoft.ContainerService/managedClusters/aks-nope' under resource "
            f"group '{RG}' was not found. For more details please go to "
            "https://aka.ms/ARMResourceNotFoundFix",
        ),
        (
            f"/subscriptions/{SUB}/resourceGroups/rg-nope/providers/Microsoft.ContainerService/"
            "managedClusters/aks-azpytest/listClusterUserCredential",
            "ResourceGroupNotFound",
            "Resource group 'rg-nope' could not be found.",
        ),
        (
            "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/rg/providers/"
            "Microsoft.ContainerService/managedClusters/aks/listClusterUserCredential",
            "SubscriptionNotFound",
            "The subscription '00000000-0000-4000-8000-000000000000' could not be found.",
        ),
    ],
)
def test_unknown_resources_are_404_in_arm_shapes(
    aks: Sandbox, path: str, code: str, message: str
) -> None:
    answer = requests.post(
        ARM + path,
        params={"api-version": API_VERSION},
        headers={"Authorization": f"Bearer {token(aks, ARM_SCOPE)}"},
        timeout=10,
    )
    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": code, "message": message}}


def test_arm_refuses_missing_and_wrong_audience_tokens(aks: Sandbox) -> None:
    missing = arm_post("listClusterUserCredential", None)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "AuthenticationFailed"
    challenge = missing.headers["WWW-Authenticate"]
    assert challenge.startswith(
        f'Bearer authorization_uri="https://login.microsoftonline.com/{TENANT}", '
        'error="invalid_token", error_description="'
    )

    wrong = arm_post("listClusterUserCredential", token(aks, AKS_SCOPE))
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert f"wrong audience or resource '{AKS_SERVER_APP}'" in error["message"]


def test_arm_reads_for_az_and_the_management_sdk(aks: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {token(aks, ARM_SCOPE)}"}

    def get(path: str, api_version: str = API_VERSION) -> Any:
        answer = requests.get(
            ARM + path, params={"api-version": api_version}, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    listed = get("/subscriptions", "2022-12-01")
    assert listed["count"] == {"type": "Total", "value": 1}
    [subscription] = listed["value"]
    assert subscription == get(f"/subscriptions/{SUB}", "2022-12-01")
    assert subscription["tenantId"] == TENANT
    assert subscription["state"] == "Enabled"
    assert subscription["displayName"] == "azpytest-sandbox"

    group = get(f"/subscriptions/{SUB}/resourcegroups/{RG.upper()}", "2022-09-01")
    assert group["name"] == RG
    assert group["type"] == "Microsoft.Resources/resourceGroups"
    assert group["properties"] == {"provisioningState": "Succeeded"}

    cluster = get(cluster_id("aks-azpytest").replace("Microsoft.", "microsoft."))
    assert cluster["name"] == "aks-azpytest"
    assert cluster["type"] == "Microsoft.ContainerService/ManagedClusters"
    properties = cluster["properties"]
    assert properties["provisioningState"] == "Succeeded"
    assert properties["powerState"] == {"code": "Running"}
    assert properties["kubernetesVersion"] == properties["currentKubernetesVersion"] == "1.32.4"
    assert properties["aadProfile"] == {
        "managed": True,
        "enableAzureRBAC": False,
        "tenantID": TENANT,
    }
    kubelet = properties["identityProfile"]["kubeletidentity"]
    assert kubelet["clientId"] != kubelet["objectId"]
    assert get(cluster_id("aks-azpytest"))["properties"]["identityProfile"] == {
        "kubeletidentity": kubelet
    }, "the cluster's GUIDs are stable"
    assert [p["mode"] for p in properties["agentPoolProfiles"]] == ["System"]
    assert cluster["identity"]["type"] == "SystemAssigned"

    local = get(cluster_id("aks-local"))
    assert "aadProfile" not in local["properties"]


# ------------------------------------------------------------------ the kubernetes client
# The client's generated models declare every field Optional; a field the server left out
# fails here, by name.


def meta(obj: Any) -> Any:
    """The object's (or list's) metadata, present."""
    assert obj.metadata is not None, f"{type(obj).__name__} has no metadata"
    return obj.metadata


def name_of(obj: Any) -> str:
    name = meta(obj).name
    assert isinstance(name, str), f"{type(obj).__name__} has no name"
    return name


def status(obj: Any) -> Any:
    assert obj.status is not None, f"{type(obj).__name__} has no status"
    return obj.status


def body_of(error: ApiException) -> str:
    assert error.body is not None, f"HTTP {error.status} without a body"
    return str(error.body)


def test_client_lists_namespaces_with_an_entra_token(aks: Sandbox, core: k8s.CoreV1Api) -> None:
    names = [name_of(ns) for ns in core.list_namespace().items]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    selected = core.list_namespace(label_selector="kubernetes.io/metadata.name=kube-system")
    assert [name_of(ns) for ns in selected.items] == ["kube-system"]
    assert aks.log.select(service="kube")[-1].who == CI_CLIENT_ID


def test_client_discovery(aks: Sandbox, core: k8s.CoreV1Api, ca_file: Path, aks_token: str) -> None:
    version = k8s.VersionApi(core.api_client).get_code()  # GET /version/
    assert (version.major, version.minor, version.git_version) == ("1", "32", "v1.32.4")
    assert all(
        getattr(version, field)
        for field in ("git_commit", "git_tree_state", "build_date", "go_version", "compiler")
    )
    assert version.platform == "linux/amd64"
    resources = {r.name: r for r in core.get_api_resources().resources}
    assert set(resources) == {
        "namespaces", "configmaps", "pods", "pods/log", "secrets", "services",
        "serviceaccounts", "events", "nodes",
    }  # fmt: skip
    assert resources["configmaps"].short_names == ["cm"]
    assert resources["namespaces"].namespaced is False

    openapi = requests.get(
        f"{server(aks).url}/openapi/v2",
        headers={"Authorization": f"Bearer {aks_token}"},
        verify=str(ca_file),
        timeout=10,
    )
    assert openapi.status_code == 404
    assert openapi.json()["kind"] == "Status"


def test_client_creates_reads_and_deletes_a_namespace_and_a_configmap(
    core: k8s.CoreV1Api,
) -> None:
    created = core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="team-a")))
    assert status(created).phase == "Active"
    assert meta(created).uid
    assert meta(core.read_namespace("team-a")).uid == meta(created).uid

    body = k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="settings", labels={"app": "demo"}),
        data={"mode": "test"},
    )
    cm = core.create_namespaced_config_map("team-a", body)
    assert meta(cm).namespace == "team-a"
    assert core.read_namespaced_config_map("settings", "team-a").data == {"mode": "test"}
    patched = core.patch_namespaced_config_map("settings", "team-a", {"data": {"extra": "1"}})
    assert patched.data == {"mode": "test", "extra": "1"}
    assert int(meta(patched).resource_version) > int(meta(cm).resource_version)
    listed = core.list_namespaced_config_map("team-a", label_selector="app=demo")
    assert [name_of(item) for item in listed.items] == ["settings"]

    with pytest.raises(ApiException) as conflict:
        core.create_namespaced_config_map("team-a", body)
    assert conflict.value.status == 409
    assert '"reason": "AlreadyExists"' in body_of(conflict.value)

    core.delete_namespaced_config_map("settings", "team-a")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("settings", "team-a")
    assert gone.value.status == 404

    core.delete_namespace("team-a")
    with pytest.raises(ApiException) as missing:
        core.read_namespace("team-a")
    assert missing.value.status == 404
    assert json.loads(body_of(missing.value))["message"] == 'namespaces "team-a" not found'


def test_client_pages_lists_and_detects_stale_writes(core: k8s.CoreV1Api) -> None:
    first = core.list_namespace(limit=2)
    assert len(first.items) == 2
    assert meta(first)._continue
    rest = core.list_namespace(limit=100, _continue=meta(first)._continue)
    assert meta(rest)._continue is None
    names = [name_of(ns) for ns in first.items + rest.items]
    assert names == sorted(names)
    assert {name_of(ns) for ns in core.list_namespace().items} == set(names)

    core.create_namespaced_config_map(
        "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="counter"), data={"n": "1"})
    )
    try:
        read = core.read_namespaced_config_map("counter", "default")
        read.data = {"n": "2"}
        core.replace_namespaced_config_map("counter", "default", read)
        read.data = {"n": "3"}
        with pytest.raises(ApiException) as stale:
            core.replace_namespaced_config_map("counter", "default", read)
        assert stale.value.status == 409
        assert '"reason": "Conflict"' in body_of(stale.value)
        selected = core.list_namespaced_config_map(
            "default", field_selector="metadata.name=counter"
        )
        assert [cm.data for cm in selected.items] == [{"n": "2"}]
    finally:
        core.delete_namespaced_config_map("counter", "default")


def test_client_watches_changes_after_a_resource_version(core: k8s.CoreV1Api) -> None:
    since = meta(core.list_namespace()).resource_version
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="watched")))
    core.delete_namespace("watched")

    events = list(
        k8s_watch.Watch().stream(core.list_namespace, resource_version=since, timeout_seconds=1)
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "watched"),
        ("DELETED", "watched"),
    ]
    quiet = list(
        k8s_watch.Watch().stream(
            core.list_namespace,
            resource_version=events[-1]["object"].metadata.resource_version,
            timeout_seconds=1,
        )
    )
    assert quiet == [], "a watch with nothing new ends empty at its timeout"


def test_fault_rules_answer_in_each_services_shape(aks: Sandbox, core: k8s.CoreV1Api) -> None:
    bearer = token(aks, ARM_SCOPE)
    aks.add_fault(service="kube", status=503, times=1)
    aks.add_fault(service="arm", status=429, times=1, retry_after=0)
    try:
        with pytest.raises(ApiException) as unavailable:
            core.list_namespace()
        throttled = arm_post("listClusterUserCredential", bearer)
    finally:
        aks.faults.clear()
    assert unavailable.value.status == 503
    assert '"reason": "ServiceUnavailable"' in body_of(unavailable.value)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert core.list_namespace().items, "a times=1 rule fires once"


def test_sovereign_cloud_arm_names_its_environment(aks: Sandbox) -> None:
    answer = requests.post(
        f"https://management.usgovcloudapi.net{cluster_id('aks-azpytest')}"
        "/listClusterUserCredential",
        params={"api-version": API_VERSION},
        headers={
            "Authorization": f"Bearer {token(aks, 'https://management.usgovcloudapi.net/.default')}"
        },
        timeout=10,
    )
    args = kubeconfig_of(answer)["users"][0]["user"]["exec"]["args"]
    assert args[args.index("--environment") + 1] == "AzureUSGovernmentCloud"
    # A public-cloud token is for another audience there.
    public = requests.post(
        f"https://management.usgovcloudapi.net{cluster_id('aks-azpytest')}"
        "/listClusterUserCredential",
        params={"api-version": API_VERSION},
        headers={"Authorization": f"Bearer {token(aks, ARM_SCOPE)}"},
        timeout=10,
    )
    assert public.status_code == 401


def test_client_gets_422_for_a_bad_name(core: k8s.CoreV1Api) -> None:
    with pytest.raises(ApiException) as invalid:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="Not_Valid")))
    assert invalid.value.status == 422
    assert '"reason": "Invalid"' in body_of(invalid.value)


def test_client_reads_a_pods_log(core: k8s.CoreV1Api) -> None:
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="jobs")))
    try:
        pod = core.create_namespaced_pod(
            "jobs",
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(
                    generate_name="migrate-",
                    annotations={LOG_ANNOTATION: "applying 3 migrations\ndone\n"},
                ),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="alpine:3.20")]),
            ),
        )
        assert name_of(pod).startswith("migrate-")
        assert status(pod).phase == "Running"
        assert status(pod).container_statuses[0].ready is True
        log = core.read_namespaced_pod_log(name_of(pod), "jobs")
        assert log == "applying 3 migrations\ndone\n"
        assert core.read_namespaced_pod_log(name_of(pod), "jobs", tail_lines=1) == "done\n"

        plain = core.create_namespaced_pod(
            "jobs",
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name="web"),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="nginx", image="nginx")]),
            ),
        )
        assert "container nginx" in core.read_namespaced_pod_log(name_of(plain), "jobs")
    finally:
        core.delete_namespace("jobs")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("web", "jobs")
    assert gone.value.status == 404, "deleting a namespace deletes its pods"


def test_client_without_a_token_gets_401(aks: Sandbox, ca_file: Path) -> None:
    api = core_api(server(aks), ca_file)
    with pytest.raises(ApiException) as refused:
        api.list_namespace()
    assert refused.value.status == 401
    assert json.loads(body_of(refused.value)) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def test_principal_without_a_role_over_the_cluster_gets_aks_403(
    aks: Sandbox, ca_file: Path
) -> None:
    # Its Entra token for the AKS server app is valid; Azure RBAC gives it nothing.
    api = core_api(server(aks), ca_file, token(aks, AKS_SCOPE, LONER_CLIENT_ID))
    with pytest.raises(ApiException) as refused:
        api.list_namespaced_pod("default")
    assert refused.value.status == 403
    assert json.loads(body_of(refused.value)) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'pods is forbidden: User "{LONER_OBJECT_ID}" cannot list resource "pods" '
        'in API group "" in the namespace "default": User does not have access to the '
        "resource in Azure. Update role assignment to allow access.",
        "reason": "Forbidden",
        "details": {"kind": "pods"},
        "code": 403,
    }
    assert aks.log.select(service="kube")[-1].who == LONER_CLIENT_ID


def test_client_with_an_arm_token_gets_401(aks: Sandbox, ca_file: Path) -> None:
    api = core_api(server(aks), ca_file, token(aks, ARM_SCOPE))
    with pytest.raises(ApiException) as refused:
        api.list_namespace()
    assert refused.value.status == 401


def test_client_with_an_expired_token_gets_401(aks: Sandbox, ca_file: Path) -> None:
    app = aks.scenario.app_by_principal("azpytest-ci")
    assert app is not None
    expired, _ = aks.entra.access_token(app, AKS_SERVER_APP, lifetime_s=-10)
    api = core_api(server(aks), ca_file, expired)
    with pytest.raises(ApiException) as refused:
        api.list_namespace()
    assert refused.value.status == 401


def test_admin_kubeconfig_client_certificate_authenticates(aks: Sandbox, tmp_path: Path) -> None:
    answer = arm_post("listClusterAdminCredential", token(aks, ARM_SCOPE), cluster="aks-local")
    kubeconfig = kubeconfig_of(answer)
    assert answer.json()["kubeconfigs"][0]["name"] == "clusterAdmin"
    assert kubeconfig["current-context"] == "aks-local-admin"
    [user] = kubeconfig["users"]
    assert user["name"] == f"clusterAdmin_{RG}_aks-local"
    assert set(user["user"]) == {"client-certificate-data", "client-key-data"}

    api = k8s.CoreV1Api(
        k8s_config.new_client_from_config_dict(kubeconfig, temp_file_path=str(tmp_path))
    )
    try:
        names = {name_of(ns) for ns in api.list_namespace().items}
    finally:
        api.api_client.close()
    assert "kube-system" in names
    assert aks.log.select(service="kube")[-1].who == "masterclient"


def test_cluster_without_entra_takes_certificates_not_tokens(aks: Sandbox, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_of(
        arm_post("listClusterUserCredential", token(aks, ARM_SCOPE), cluster="aks-local")
    )
    assert set(kubeconfig["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
    local = server(aks, "aks-local")
    ca_path = tmp_path / "local-ca.pem"
    ca_path.write_bytes(local.ca_pem)
    api = core_api(local, ca_path, token(aks, AKS_SCOPE))
    with pytest.raises(ApiException) as refused:
        api.list_namespace()
    assert refused.value.status == 401


# ------------------------------------------------------------------------------ kubectl

KUBECTL = Path("/usr/bin/kubectl")
needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="/usr/bin/kubectl is not installed")


def kubectl(
    tmp_path: Path, kubeconfig: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    # HOME keeps kubectl's discovery cache in tmp_path; no stdin, so it can never prompt.
    env = {**os.environ, "KUBECONFIG": str(path), "HOME": str(tmp_path)}
    return subprocess.run(
        [str(KUBECTL), "--request-timeout=10s", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def with_user(kubeconfig: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The ARM kubeconfig with its user replaced, as the product replaces kubelogin's exec."""
    kubeconfig = dict(kubeconfig)
    kubeconfig["users"] = [{"name": kubeconfig["users"][0]["name"], "user": user}]
    return kubeconfig


def test_kubectl_protobuf_bodies_are_read() -> None:
    # `kubectl create namespace x` v1.32 sends this body (captured with -v=9).
    body = bytes.fromhex(
        "6b 38 73 00 0a 0f 0a 02 76 31 12 09 4e 61 6d 65"
        "73 70 61 63 65 12 19 0a 11 0a 01 78 12 00 1a 00"
        "22 00 2a 00 32 00 38 00 42 00 12 00 1a 02 0a 00"
        "1a 00 22 00"
    )
    assert kubeproto.decode(body) == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "x"},
        "spec": {},
        "status": {},
    }
    with pytest.raises(kubeproto.ProtoError):
        kubeproto.decode(b'{"kind": "Namespace"}')


@pytest.fixture
def user_kubeconfig(aks: Sandbox) -> dict[str, Any]:
    return kubeconfig_of(arm_post("listClusterUserCredential", token(aks, ARM_SCOPE)))


@needs_kubectl
def test_kubectl_with_a_token_manages_namespaces(
    aks: Sandbox, tmp_path: Path, user_kubeconfig: dict[str, Any], aks_token: str
) -> None:
    kubeconfig = with_user(user_kubeconfig, {"token": aks_token})

    listed = kubectl(tmp_path, kubeconfig, "get", "ns")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == ["NAME", "STATUS", "AGE"]
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert {"default", "kube-system"} <= names

    created = kubectl(tmp_path, kubeconfig, "create", "ns", "from-kubectl")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "namespace/from-kubectl created"
    shown = kubectl(tmp_path, kubeconfig, "get", "ns", "from-kubectl")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].split()[:2] == ["from-kubectl", "Active"]

    made = kubectl(
        tmp_path, kubeconfig, "create", "configmap", "cfg", "-n", "from-kubectl",
        "--from-literal=key=value",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    configmaps = kubectl(tmp_path, kubeconfig, "get", "configmaps", "-n", "from-kubectl")
    assert configmaps.returncode == 0, configmaps.stderr
    rows = {line.split()[0]: line.split()[1] for line in configmaps.stdout.splitlines()[1:]}
    assert rows == {"cfg": "1", "kube-root-ca.crt": "1"}

    deleted = kubectl(tmp_path, kubeconfig, "delete", "ns", "from-kubectl")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == 'namespace "from-kubectl" deleted'
    after = kubectl(tmp_path, kubeconfig, "get", "ns", "from-kubectl")
    assert after.returncode == 1
    assert 'namespaces "from-kubectl" not found' in after.stderr


@needs_kubectl
def test_kubectl_runs_a_pod_and_reads_its_log(
    tmp_path: Path, user_kubeconfig: dict[str, Any], aks_token: str
) -> None:
    kubeconfig = with_user(user_kubeconfig, {"token": aks_token})
    ran = kubectl(tmp_path, kubeconfig, "run", "hello", "--image=busybox:1.36", "--", "echo", "hi")
    assert ran.returncode == 0, ran.stderr
    try:
        ready = kubectl(tmp_path, kubeconfig, "wait", "--for=condition=Ready", "pod/hello")
        assert ready.returncode == 0, ready.stderr
        assert ready.stdout.strip() == "pod/hello condition met"
        assert ready.stderr == "", "the watch kubectl wait starts is served"
        logs = kubectl(tmp_path, kubeconfig, "logs", "hello")
        assert logs.returncode == 0, logs.stderr
        assert "running echo hi" in logs.stdout
    finally:
        kubectl(tmp_path, kubeconfig, "delete", "pod", "hello")


@needs_kubectl
def test_kubectl_without_a_token_is_unauthorized(
    aks: Sandbox, tmp_path: Path, user_kubeconfig: dict[str, Any]
) -> None:
    # A user with no credential at all makes kubectl prompt for a password instead of
    # calling the server; basic auth reaches the server, which (like AKS) takes no password.
    kubeconfig = with_user(user_kubeconfig, {"username": "admin", "password": "admin"})
    raw = kubectl(tmp_path, kubeconfig, "get", "--raw", "/api/v1/namespaces")
    assert raw.returncode != 0
    assert "error: You must be logged in to the server (Unauthorized)" in raw.stderr

    listed = kubectl(tmp_path, kubeconfig, "get", "ns")
    assert listed.returncode != 0
    # kubectl words a 401 during discovery differently from one on a request.
    assert "error: You must be logged in to the server" in listed.stderr
    assert {e.status for e in aks.log.select(service="kube")[-2:]} == {401}


@needs_kubectl
def test_kubectl_with_an_expired_token_is_unauthorized(
    aks: Sandbox, tmp_path: Path, user_kubeconfig: dict[str, Any]
) -> None:
    app = aks.scenario.app_by_principal("azpytest-ci")
    assert app is not None
    expired, _ = aks.entra.access_token(app, AKS_SERVER_APP, lifetime_s=-10)
    raw = kubectl(tmp_path, with_user(user_kubeconfig, {"token": expired}), "get", "--raw", "/api")
    assert raw.returncode != 0
    assert "Unauthorized" in raw.stderr


@needs_kubectl
def test_kubectl_with_the_admin_client_certificate(aks: Sandbox, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_of(
        arm_post("listClusterAdminCredential", token(aks, ARM_SCOPE), cluster="aks-local")
    )
    version = kubectl(tmp_path, kubeconfig, "version", "-o", "yaml")
    assert version.returncode == 0, version.stderr
    assert yaml.safe_load(version.stdout)["serverVersion"]["gitVersion"] == "v1.32.4"
    assert aks.log.select(service="kube")[-1].who == "masterclient"

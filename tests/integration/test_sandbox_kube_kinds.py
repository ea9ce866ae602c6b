"""The sandbox cluster has what AKS suites touch (issue 15, item 7), seen through the kubeconfig
`azpytest prepare` writes, /usr/bin/kubectl and the real kubernetes client: the node pool and
kube-system pods of the scenario, namespaced and cluster-scoped kinds of the core, apps,
batch, rbac and policy groups, `kubectl apply` (client- and server-side), Jobs that complete
and Deployments that roll out, watches that deliver the controllers' changes, and AKS's 403
for what the principal's role does not allow."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from azpytest_sandbox import Sandbox
from azpytest_sandbox.scenario import ScenarioError, build_scenario, default_scenario_data

OBJECT = "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e"
AKS = {"AZPYTEST_AKS_RESOURCE_GROUP": "rg-azpytest", "AZPYTEST_AKS_CLUSTER": "aks-azpytest"}
KUBECTL = Path("/usr/bin/kubectl")
needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="/usr/bin/kubectl is not installed")
Step = Callable[..., Any]

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: hello, namespace: work}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: hello, image: "busybox:1.36", command: [echo, hi]}]
"""
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: work}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}
        - {name: sidecar, image: "busybox:1.36"}
"""


def world(node_count: int = 2, extra_role: str | None = None) -> dict[str, Any]:
    subscriptions = default_scenario_data()["subscriptions"]
    subscriptions[0]["resource_groups"][0]["clusters"][0]["node_count"] = node_count
    if extra_role:
        subscriptions[0]["grants"].append({"principal": "azpytest-ci", "role": extra_role})
    return {"subscriptions": subscriptions}


class Cluster:
    """kubectl and the kubernetes client, both through the kubeconfig `prepare` wrote."""

    def __init__(self, sandbox: Sandbox, kubeconfig: Path, home: Path) -> None:
        self.sandbox = sandbox
        self.kubeconfig = kubeconfig
        self.home = home
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "RUNNER_"))
                and k != "KUBECONFIG"
            },
            **sandbox.env,
            "GITHUB_ACTIONS": "true",
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(home),
        }

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), "--request-timeout=20s", *args],
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.kubectl(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def cluster_of(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Cluster]:
    """A sandbox of `world(...)`, `prepare` run against it, this process a later job step."""

    def make(**kwargs: Any) -> Cluster:
        sandbox = make_sandbox(world(**kwargs))
        prepared = actions_step(sandbox, "prepare", env=AKS)
        assert prepared.returncode == 0, prepared.stderr + prepared.stdout
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        cluster = Cluster(sandbox, Path(prepared.env_file["KUBECONFIG"]), home)
        for name in list(os.environ):
            if name.startswith(("AZPYTEST_", "GITHUB_", "ACTIONS_")) or name == "KUBECONFIG":
                monkeypatch.delenv(name)
        for name, value in cluster.env.items():
            if name != "HOME":
                monkeypatch.setenv(name, value)
        return cluster

    return make


@pytest.fixture
def api_client() -> Iterator[Callable[[Cluster], k8s.ApiClient]]:
    made: list[k8s.ApiClient] = []

    def make(cluster: Cluster) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
        made.append(k8s.ApiClient(configuration))
        return made[-1]

    yield make
    for api in made:
        api.close()


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()[1:]]


# ------------------------------------------------------------------ nodes and kube-system


@needs_kubectl
def test_node_pool_and_kube_system_pods_come_from_the_scenario(
    cluster_of: Callable[..., Cluster], api_client: Callable[[Cluster], k8s.ApiClient]
) -> None:
    cluster = cluster_of(node_count=3)

    nodes = rows(cluster.ok("get", "nodes", "-L", "kubernetes.azure.com/agentpool"))

    assert nodes == [
        [f"aks-nodepool1-12345678-vmss00000{i}", "Ready", "<none>", nodes[i][3], "v1.32.4",
         "nodepool1"]
        for i in range(3)
    ]  # fmt: skip
    core = k8s.CoreV1Api(api_client(cluster))
    linux: Any = core.list_node(label_selector="kubernetes.io/os=linux").items
    assert len(linux) == 3
    ready = [c for c in linux[0].status.conditions if c.type == "Ready"]
    assert [(c.status, c.reason) for c in ready] == [("True", "KubeletReady")]
    pods: Any = core.list_namespaced_pod("kube-system").items
    by_app = {p.metadata.labels.get("k8s-app") or p.metadata.labels.get("component") for p in pods}
    assert {"kube-dns", "metrics-server", "konnectivity-agent", "kube-proxy"} <= by_app
    assert {p.status.phase for p in pods} == {"Running"}
    assert {p.spec.node_name for p in pods} == {n.metadata.name for n in linux}
    node_of_dns = core.list_namespaced_pod(
        "kube-system", field_selector=f"spec.nodeName={linux[0].metadata.name}"
    )
    assert node_of_dns.items


def test_node_count_must_be_a_small_whole_number() -> None:
    data = world()
    data["subscriptions"][0]["resource_groups"][0]["clusters"][0]["node_count"] = 0
    with pytest.raises(ScenarioError) as raised:
        build_scenario(data)
    assert str(raised.value) == (
        "subscriptions[0].resource_groups[0].clusters[0].node_count: "
        "expected a whole number from 1 to 100"
    )


@needs_kubectl
def test_discovery_lists_every_group_for_kubectl(cluster_of: Callable[..., Cluster]) -> None:
    cluster = cluster_of()

    listed = rows(cluster.ok("api-resources"))

    assert {(r[0], r[-3]) for r in listed if len(r) >= 4} >= {
        ("nodes", "v1"),
        ("deployments", "apps/v1"),
        ("replicasets", "apps/v1"),
        ("jobs", "batch/v1"),
        ("clusterroles", "rbac.authorization.k8s.io/v1"),
        ("rolebindings", "rbac.authorization.k8s.io/v1"),
        ("poddisruptionbudgets", "policy/v1"),
        ("serviceaccounts", "v1"),
    }
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in listed
    assert ["clusterroles", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"] in listed


# ------------------------------------------------------------------ namespaced kinds


def test_python_client_makes_a_namespace_a_service_account_and_a_role_binding(
    cluster_of: Callable[..., Cluster], api_client: Callable[[Cluster], k8s.ApiClient]
) -> None:
    api = api_client(cluster_of())
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="team")))
    core.create_namespaced_service_account(
        "team", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="runner"))
    )
    rbac.create_namespaced_role_binding(
        "team",
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="runner-view"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"
            ),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="runner", namespace="team")],
        ),
    )

    binding: Any = rbac.read_namespaced_role_binding("runner-view", "team")
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "view")
    assert binding.metadata.uid and binding.metadata.resource_version
    accounts: Any = core.list_namespaced_service_account("team").items
    assert [a.metadata.name for a in accounts] == ["runner"]
    with pytest.raises(ApiException) as again:
        core.create_namespaced_service_account(
            "team", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="runner"))
        )
    assert again.value.status == 409
    assert json.loads(str(again.value.body))["message"] == 'serviceaccounts "runner" already exists'

    core.delete_namespace("team")
    with pytest.raises(ApiException) as gone:
        rbac.read_namespaced_role_binding("runner-view", "team")
    assert json.loads(str(gone.value.body))["message"] == (
        'rolebindings.rbac.authorization.k8s.io "runner-view" not found'
    )


@needs_kubectl
def test_kubectl_creates_service_accounts_and_role_bindings_from_protobuf(
    cluster_of: Callable[..., Cluster],
) -> None:
    cluster = cluster_of()
    assert cluster.ok("create", "ns", "work") == "namespace/work created\n"

    assert cluster.ok("create", "sa", "bot", "-n", "work") == "serviceaccount/bot created\n"
    assert cluster.ok(
        "create", "rolebinding", "bot", "--clusterrole=edit", "--serviceaccount=work:bot",
        "-n", "work",
    ) == "rolebinding.rbac.authorization.k8s.io/bot created\n"  # fmt: skip
    subjects = cluster.ok("get", "rolebinding", "bot", "-n", "work", "-o", "jsonpath={.subjects}")
    assert json.loads(subjects) == [{"kind": "ServiceAccount", "name": "bot", "namespace": "work"}]


# ------------------------------------------------------------------ controllers


@needs_kubectl
def test_kubectl_applies_a_job_and_waits_for_it_to_complete(
    cluster_of: Callable[..., Cluster],
) -> None:
    cluster = cluster_of()
    cluster.ok("create", "ns", "work")

    assert cluster.ok("apply", "-f", "-", stdin=JOB) == "job.batch/hello created\n"
    waited = cluster.kubectl(
        "wait", "--for=condition=complete", "--timeout=60s", "job/hello", "-n", "work"
    )

    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "job.batch/hello condition met\n"
    assert rows(cluster.ok("get", "job", "hello", "-n", "work"))[0][:3] == [
        "hello", "Complete", "1/1",
    ]  # fmt: skip
    phases = cluster.ok(
        "get", "pods", "-n", "work", "-l", "job-name=hello", "-o",
        "jsonpath={.items[*].status.phase}",
    )  # fmt: skip
    assert phases == "Succeeded"
    reasons = cluster.ok(
        "get", "events", "-n", "work", "--field-selector", "involvedObject.name=hello",
        "-o", "jsonpath={.items[*].reason}",
    )  # fmt: skip
    assert sorted(reasons.split()) == ["Completed", "SuccessfulCreate"]


@needs_kubectl
def test_kubectl_applies_a_deployment_and_it_rolls_out_and_rolls_forward(
    cluster_of: Callable[..., Cluster],
) -> None:
    cluster = cluster_of()
    cluster.ok("create", "ns", "work")

    assert cluster.ok("apply", "-f", "-", stdin=DEPLOYMENT) == "deployment.apps/web created\n"
    assert cluster.ok("rollout", "status", "--timeout=60s", "deploy/web", "-n", "work") == (
        'deployment "web" successfully rolled out\n'
    )
    assert cluster.ok(
        "wait", "--for=condition=available", "--timeout=60s", "deploy/web", "-n", "work"
    ) == "deployment.apps/web condition met\n"  # fmt: skip
    assert rows(cluster.ok("get", "deploy", "-n", "work"))[0][:4] == ["web", "2/2", "2", "2"]

    # A second apply sends a strategic merge patch: the new image lands, the old pods go.
    changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("nginx:1.27", "nginx:1.28")
    assert cluster.ok("apply", "-f", "-", stdin=changed) == "deployment.apps/web configured\n"
    cluster.ok("rollout", "status", "--timeout=60s", "deploy/web", "-n", "work")
    images = cluster.ok(
        "get", "pods", "-n", "work", "-l", "app=web", "-o",
        "jsonpath={range .items[*]}{.spec.containers[*].image}{'\\n'}{end}",
    )  # fmt: skip
    assert images.splitlines() == ["nginx:1.28 busybox:1.36"] * 3
    replica_sets = {r[0]: r[1] for r in rows(cluster.ok("get", "rs", "-n", "work"))}
    assert sorted(replica_sets.values()) == ["0", "3"]

    # `kubectl patch` (strategic by default) merges the containers list by name.
    patched = cluster.ok(
        "patch", "deploy", "web", "-n", "work", "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}}',
    )  # fmt: skip
    assert patched == "deployment.apps/web patched\n"
    containers = cluster.ok(
        "get", "deploy", "web", "-n", "work", "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    )  # fmt: skip
    assert containers == "nginx:1.28 busybox:1.37"


@needs_kubectl
def test_server_side_apply_creates_then_merges(
    cluster_of: Callable[..., Cluster], api_client: Callable[[Cluster], k8s.ApiClient]
) -> None:
    cluster = cluster_of()
    cluster.ok("create", "ns", "work")

    first = cluster.ok("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT)
    second = cluster.ok(
        "apply", "--server-side", "-f", "-", stdin=DEPLOYMENT.replace("replicas: 2", "replicas: 4")
    )

    assert first == second == "deployment.apps/web serverside-applied\n"
    deployment: Any = k8s.AppsV1Api(api_client(cluster)).read_namespaced_deployment("web", "work")
    assert (deployment.spec.replicas, deployment.status.ready_replicas) == (4, 4)
    assert deployment.metadata.generation == 2
    assert [(m.manager, m.operation) for m in deployment.metadata.managed_fields] == [
        ("kubectl", "Apply")
    ]


def test_watch_delivers_the_pods_a_deployment_makes(
    cluster_of: Callable[..., Cluster], api_client: Callable[[Cluster], k8s.ApiClient]
) -> None:
    api = api_client(cluster_of())
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="work")))
    listed: Any = core.list_namespaced_pod("work")
    since = listed.metadata.resource_version
    apps.create_namespaced_deployment(
        "work",
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name="web"),
            spec=k8s.V1DeploymentSpec(
                replicas=2,
                selector=k8s.V1LabelSelector(match_labels={"app": "web"}),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels={"app": "web"}),
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="web", image="nginx")]),
                ),
            ),
        ),
    )

    seen = []
    watch = k8s_watch.Watch()
    for event in watch.stream(
        core.list_namespaced_pod,
        "work",
        label_selector="app=web",
        resource_version=since,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"].status.phase))
        if len(seen) == 2:
            watch.stop()
    assert seen == [("ADDED", "Running"), ("ADDED", "Running")]


# ------------------------------------------------------------------ access


@needs_kubectl
def test_cluster_user_is_refused_cluster_scoped_writes_with_aks_403(
    cluster_of: Callable[..., Cluster], api_client: Callable[[Cluster], k8s.ApiClient]
) -> None:
    cluster = cluster_of()

    refused = cluster.kubectl("create", "clusterrole", "reader", "--verb=get", "--resource=pods")

    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "Error from server (Forbidden): clusterroles.rbac.authorization.k8s.io is forbidden: "
        f'User "{OBJECT}" cannot create resource "clusterroles" in API group '
        '"rbac.authorization.k8s.io" at the cluster scope: User does not have access to the '
        "resource in Azure. Update role assignment to allow access."
    ]
    core = k8s.CoreV1Api(api_client(cluster))
    with pytest.raises(ApiException) as label:
        core.patch_node(
            "aks-nodepool1-12345678-vmss000000", {"metadata": {"labels": {"team": "a"}}}
        )
    assert label.value.status == 403
    assert json.loads(str(label.value.body)) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'nodes "aks-nodepool1-12345678-vmss000000" is forbidden: User '
        f'"{OBJECT}" cannot patch resource "nodes" in API group "" at the cluster scope: User '
        "does not have access to the resource in Azure. Update role assignment to allow access.",
        "reason": "Forbidden",
        "details": {"name": "aks-nodepool1-12345678-vmss000000", "kind": "nodes"},
        "code": 403,
    }
    can = cluster.kubectl("auth", "can-i", "create", "clusterroles")
    assert (can.returncode, can.stdout) == (1, "no\n")
    # Reads of cluster-scoped kinds and writes of namespaced ones stay open to the user.
    assert cluster.ok("get", "clusterroles", "-o", "name") == ""
    assert cluster.ok("create", "role", "r", "--verb=get", "--resource=pods") == (
        "role.rbac.authorization.k8s.io/r created\n"
    )


@needs_kubectl
def test_rbac_cluster_admin_writes_cluster_scoped_kinds(
    cluster_of: Callable[..., Cluster],
) -> None:
    cluster = cluster_of(extra_role="Azure Kubernetes Service RBAC Cluster Admin")

    created = cluster.ok("create", "clusterrole", "reader", "--verb=get", "--resource=pods")
    bound = cluster.ok(
        "create", "clusterrolebinding", "reader", "--clusterrole=reader", "--group=readers"
    )

    assert cluster.ok("auth", "can-i", "create", "clusterroles") == "yes\n"
    assert created == "clusterrole.rbac.authorization.k8s.io/reader created\n"
    assert bound == "clusterrolebinding.rbac.authorization.k8s.io/reader created\n"
    assert cluster.ok("label", "node", "aks-nodepool1-12345678-vmss000001", "team=a") == (
        "node/aks-nodepool1-12345678-vmss000001 labeled\n"
    )


@needs_kubectl
def test_kubectl_create_sends_protobuf_workloads_and_delete_takes_what_they_own(
    cluster_of: Callable[..., Cluster],
) -> None:
    cluster = cluster_of()
    cluster.ok("create", "ns", "work")

    made = [
        cluster.ok("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2", "-n", "work"),
        cluster.ok("create", "job", "once", "--image=busybox:1.36", "-n", "work", "--", "echo"),
        cluster.ok("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "work"),
    ]  # fmt: skip

    assert made == [
        "deployment.apps/web created\n", "job.batch/once created\n", "service/web created\n",
    ]  # fmt: skip
    cluster.ok("wait", "--for=condition=complete", "--timeout=60s", "job/once", "-n", "work")
    pods = {r[0].split("-")[0]: r[2] for r in rows(cluster.ok("get", "pods", "-n", "work"))}
    assert pods == {"web": "Running", "once": "Completed"}
    [service] = rows(cluster.ok("get", "svc", "web", "-n", "work"))
    assert (service[1], service[4]) == ("ClusterIP", "80/TCP")
    events = rows(cluster.ok("get", "events", "-n", "work", "--sort-by=.reason"))
    assert {(e[2], e[3]) for e in events} >= {
        ("Completed", "job/once"),
        ("ScalingReplicaSet", "deployment/web"),
    }

    assert cluster.ok("delete", "deploy", "web", "-n", "work") == 'deployment.apps "web" deleted\n'
    left = cluster.ok("get", "rs,pods", "-n", "work", "-o", "name")
    assert [line.split("-")[0] for line in left.splitlines()] == ["pod/once"]

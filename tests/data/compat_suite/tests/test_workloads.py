import subprocess
import uuid

import pytest
from kubernetes import client

JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      serviceAccountName: runner
      containers:
        - name: smoke
          image: busybox:1.36
          command: ["sh", "-c", "echo ok"]
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 80
"""


def kubectl(kubeconfig, *args, stdin=None):
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture
def namespace(ensure_kubeconfig):
    core = client.CoreV1Api()
    name = f"it-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_service_account(
        name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )
    yield name
    core.delete_namespace(name)


def test_node_pool_is_ready(ensure_kubeconfig):
    nodes = client.CoreV1Api().list_node().items
    assert nodes
    for node in nodes:
        assert node.metadata.labels["kubernetes.io/os"] == "linux"
        assert node.metadata.labels["kubernetes.azure.com/agentpool"]
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True"


def test_system_pods_are_running(ensure_kubeconfig):
    pods = client.CoreV1Api().list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns")
    assert pods.items
    assert {pod.status.phase for pod in pods.items} == {"Running"}


def test_service_account_can_be_bound_to_a_role(namespace):
    rbac = client.RbacAuthorizationV1Api()
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="runner-reads-pods"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="runner", namespace=namespace)
            ],
        ),
    )
    binding = rbac.read_namespaced_role_binding("runner-reads-pods", namespace)
    assert binding.role_ref.name == "pod-reader"
    assert [(s.kind, s.name) for s in binding.subjects] == [("ServiceAccount", "runner")]


def test_job_runs_to_completion(ensure_kubeconfig, namespace, artifact_collector):
    kubectl(ensure_kubeconfig, "create", "-n", namespace, "-f", "-", stdin=JOB)
    waited = kubectl(
        ensure_kubeconfig,
        "wait", "--for=condition=complete", "--timeout=60s", "job/smoke", "-n", namespace,
    )  # fmt: skip
    assert waited.stdout.strip() == "job.batch/smoke condition met"
    artifact_collector["events.txt"] = kubectl(
        ensure_kubeconfig, "get", "events", "-n", namespace
    ).stdout
    job = client.BatchV1Api().read_namespaced_job("smoke", namespace)
    assert job.status.succeeded == 1
    pods = client.CoreV1Api().list_namespaced_pod(namespace, label_selector="job-name=smoke")
    assert [pod.status.phase for pod in pods.items] == ["Succeeded"]


def test_deployment_rolls_out(ensure_kubeconfig, namespace):
    kubectl(ensure_kubeconfig, "create", "-n", namespace, "-f", "-", stdin=DEPLOYMENT)
    rolled = kubectl(
        ensure_kubeconfig, "rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s"
    )
    assert 'deployment "web" successfully rolled out' in rolled.stdout
    deployment = client.AppsV1Api().read_namespaced_deployment("web", namespace)
    assert deployment.status.available_replicas == 2
    pods = client.CoreV1Api().list_namespaced_pod(namespace, label_selector="app=web")
    assert len(pods.items) == 2

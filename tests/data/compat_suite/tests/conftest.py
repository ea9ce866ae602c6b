"""A typical AKS integration suite's conftest, as teams write it today: nothing in it knows
about azpytest. Its own `.env` template loaded (an empty AZURE_CLIENT_SECRET in it), a plainly
registered `--integration-debug`, the cluster's coordinates from AZURE_RESOURCE_GROUP and
AZURE_AKS_CLUSTER_NAME, DefaultAzureCredential, a mapping-shaped `real_aks_cluster`, the ARM
kubeconfig (exec: kubelogin) written to ~/.kube/config with a backup, and a mapping-shaped
`artifact_collector` saved when a test fails."""

import base64
import os
import shutil
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerservice import ContainerServiceClient
from kubernetes import config


def _load_dotenv(path):
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


_load_dotenv(Path(__file__).resolve().parent.parent / ".env")


def pytest_addoption(parser):
    parser.addoption("--integration-debug", action="store_true", default=False)


@pytest.fixture(scope="session")
def debug_mode(request):
    return request.config.getoption("--integration-debug")


@pytest.fixture(scope="session")
def real_aks_cluster():
    credential = DefaultAzureCredential()
    subscription_id = os.environ["AZURE_SUBSCRIPTION_ID"]
    resource_group = os.environ["AZURE_RESOURCE_GROUP"]
    cluster_name = os.environ["AZURE_AKS_CLUSTER_NAME"]
    aks_client = ContainerServiceClient(credential, subscription_id)
    cluster = aks_client.managed_clusters.get(resource_group, cluster_name)
    assert cluster.provisioning_state == "Succeeded"
    return {
        "subscription_id": subscription_id,
        "resource_group": resource_group,
        "cluster_name": cluster_name,
        "managed_identity_client_id": cluster.identity_profile["kubeletidentity"].client_id,
        "credential": credential,
        "aks_client": aks_client,
    }


@pytest.fixture(scope="session")
def ensure_kubeconfig(real_aks_cluster):
    result = real_aks_cluster["aks_client"].managed_clusters.list_cluster_user_credentials(
        real_aks_cluster["resource_group"], real_aks_cluster["cluster_name"]
    )
    kubeconfig = Path.home() / ".kube" / "config"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    backup = kubeconfig.with_suffix(".backup")
    if kubeconfig.exists():
        shutil.copy(kubeconfig, backup)
    value = result.kubeconfigs[0].value
    kubeconfig.write_bytes(value if isinstance(value, bytes) else base64.b64decode(value))
    config.load_kube_config(config_file=str(kubeconfig))
    yield kubeconfig
    if backup.exists():
        shutil.move(backup, kubeconfig)


@pytest.fixture
def artifact_collector(request):
    collected = {}
    yield collected
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = Path("test-artifacts") / request.node.name
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in collected.items():
            (folder / name).write_text(str(text))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

"""A typical AKS integration suite's conftest, as teams write it today: nothing in it knows
about azpytest. DefaultAzureCredential from the environment, the cluster checked through ARM,
its user kubeconfig written to ~/.kube/config, then the kubernetes client."""

import base64
import os
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerservice import ContainerServiceClient
from kubernetes import client, config

RESOURCE_GROUP = os.environ.get("AKS_RESOURCE_GROUP", "rg-azpytest")
CLUSTER_NAME = os.environ.get("AKS_CLUSTER_NAME", "aks-azpytest")


@pytest.fixture(scope="session")
def credential():
    return DefaultAzureCredential()


@pytest.fixture(scope="session")
def aks_cluster(credential):
    aks = ContainerServiceClient(credential, os.environ["AZURE_SUBSCRIPTION_ID"])
    cluster = aks.managed_clusters.get(RESOURCE_GROUP, CLUSTER_NAME)
    assert cluster.provisioning_state == "Succeeded"
    return aks, cluster


@pytest.fixture(scope="session")
def kube_api(aks_cluster):
    aks, _cluster = aks_cluster
    result = aks.managed_clusters.list_cluster_user_credentials(RESOURCE_GROUP, CLUSTER_NAME)
    kubeconfig = Path.home() / ".kube" / "config"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    value = result.kubeconfigs[0].value
    kubeconfig.write_bytes(value if isinstance(value, bytes) else base64.b64decode(value))
    config.load_kube_config(config_file=str(kubeconfig))
    return client.CoreV1Api()

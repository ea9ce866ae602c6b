import subprocess

from kubernetes import client


def test_kubelet_identity_is_set(real_aks_cluster):
    aks = real_aks_cluster["aks_client"]
    cluster = aks.managed_clusters.get(
        real_aks_cluster["resource_group"], real_aks_cluster["cluster_name"]
    )
    kubelet = cluster.identity_profile["kubeletidentity"].client_id
    assert kubelet == real_aks_cluster["managed_identity_client_id"]


def test_namespaces_listed(ensure_kubeconfig):
    names = {ns.metadata.name for ns in client.CoreV1Api().list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_configmap_round_trip(ensure_kubeconfig, artifact_collector, debug_mode):
    core = client.CoreV1Api()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="compat-check"), data={"ok": "yes"})
    core.create_namespaced_config_map("default", body)
    try:
        read = core.read_namespaced_config_map("compat-check", "default")
        artifact_collector["configmap.txt"] = read.data
        if debug_mode:
            print(read)
        assert read.data == {"ok": "yes"}
    finally:
        core.delete_namespaced_config_map("compat-check", "default")


def test_kubectl_with_the_kubeconfig(ensure_kubeconfig):
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(ensure_kubeconfig), "get", "ns", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "namespace/default" in out.stdout.split()


def test_key_vault_with_the_same_credential(real_aks_cluster):
    from azure.keyvault.secrets import SecretClient

    vault = SecretClient("https://kv-azpytest.vault.azure.net", real_aks_cluster["credential"])
    assert vault.get_secret("pg-user").value == "app"

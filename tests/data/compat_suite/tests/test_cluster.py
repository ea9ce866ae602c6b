from kubernetes import client


def test_kubelet_identity_is_set(aks_cluster):
    _aks, cluster = aks_cluster
    assert cluster.identity_profile["kubeletidentity"].client_id


def test_namespaces_listed(kube_api):
    names = {ns.metadata.name for ns in kube_api.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_configmap_round_trip(kube_api):
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="compat-check"), data={"ok": "yes"})
    kube_api.create_namespaced_config_map("default", body)
    try:
        assert kube_api.read_namespaced_config_map("compat-check", "default").data == {"ok": "yes"}
    finally:
        kube_api.delete_namespaced_config_map("compat-check", "default")


def test_key_vault_with_the_same_credential(credential):
    from azure.keyvault.secrets import SecretClient

    vault = SecretClient("https://kv-azpytest.vault.azure.net", credential)
    assert vault.get_secret("pg-user").value == "app"

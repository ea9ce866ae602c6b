"""The AKS cluster, through the kubeconfig azpytest wrote (no az, no kubelogin)."""

from kubernetes import client


def test_configmap_round_trip(kube_client, kube_namespace):
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(
        kube_namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="shop"), data={"mode": "e2e"}),
    )
    assert core.read_namespaced_config_map("shop", kube_namespace).data == {"mode": "e2e"}

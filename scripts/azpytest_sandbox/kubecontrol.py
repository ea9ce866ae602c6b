"""What an AKS cluster's controllers and node pool do, simulated on the sandbox's object store.

- The node pool: N nodes with AKS's labels and a Ready condition, and the `kube-system`
  workloads AKS runs on them (coredns, metrics-server, konnectivity-agent as Deployments, a
  kube-proxy pod per node).
- The Deployment controller: a ReplicaSet per pod template, scaled to the Deployment's
  replicas; older ReplicaSets scaled to 0; status with readyReplicas, availableReplicas and
  the `Available` and `Progressing` conditions (what `kubectl rollout status` and
  `kubectl wait --for=condition=available` read).
- The ReplicaSet controller: pods (Running at once, as the store makes them) up to replicas.
- The Job controller: `completions` pods that have Succeeded, then `status.succeeded` and
  the `Complete` condition (what `kubectl wait --for=condition=complete` reads).
- Events for each of those steps, as the controllers write them.

They act on write (the store calls :meth:`Controllers.reconcile` under its lock after each
create or spec change), so a client's next read, and every watch, sees the outcome: no
background thread, nothing to wait for.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import uuid
from typing import Any

from .kubestore import (
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    NODES,
    PODS,
    REPLICASETS,
    ObjectStore,
    Resource,
    now,
)
from .scenario import Cluster

POOL = "nodepool1"
# AKS names a pool's VM scale set after the pool and a hash of the cluster.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# The kube-system Deployments an AKS cluster runs: name -> (replicas, image, k8s-app label).
SYSTEM_DEPLOYMENTS = {
    "coredns": (2, "mcr.microsoft.com/oss/v2/kubernetes/coredns:v1.11.3-8", "kube-dns"),
    "coredns-autoscaler": (
        1,
        "mcr.microsoft.com/oss/v2/kubernetes/autoscaler/cluster-proportional-autoscaler:v1.9.0",
        "coredns-autoscaler",
    ),
    "metrics-server": (
        2,
        "mcr.microsoft.com/oss/v2/kubernetes/metrics-server:v0.7.2-5",
        "metrics-server",
    ),
    "konnectivity-agent": (
        2,
        "mcr.microsoft.com/oss/v2/kubernetes/apiserver-network-proxy/agent:v0.30.3-hotfix.20240819",
        "konnectivity-agent",
    ),
}
NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202511.07.0"
KUBE_PROXY_IMAGE = "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.32.4"


def node_names(count: int) -> list[str]:
    return [f"aks-{POOL}-12345678-vmss{i:06d}" for i in range(count)]


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def _template_hash(template: Any) -> str:
    digest = hashlib.sha256(repr(template).encode()).digest()
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:10])


def _condition(kind: str, reason: str, message: str, when: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": when,
        "reason": reason,
        "message": message,
    }


class Controllers:
    """The simulated controllers of one cluster's object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # ---------------------------------------------------------------- the cluster's start

    def seed(self, cluster: Cluster) -> None:
        """The node pool and kube-system workloads of `cluster`."""
        names = node_names(max(1, cluster.node_count))
        self.store.nodes = [(name, f"10.224.0.{4 + i}") for i, name in enumerate(names)]
        for i, name in enumerate(names):
            node = self._node(cluster, i, name)
            self.store.create(NODES, "", node)
            # A node's status is the kubelet's to write; the store drops it on create.
            self.store.set_status(NODES, "", name, node["status"])
        for name, (replicas, image, app) in SYSTEM_DEPLOYMENTS.items():
            labels = {"k8s-app": app, "kubernetes.azure.com/managedby": "aks"}
            self.store.create(
                DEPLOYMENTS,
                "kube-system",
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"k8s-app": app}},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "priorityClassName": "system-node-critical",
                                "containers": [{"name": name, "image": image}],
                            },
                        },
                    },
                },
            )
        for name in names:
            self.store.create(
                PODS,
                "kube-system",
                {
                    "metadata": {
                        "name": f"kube-proxy-{_suffix()}",
                        "labels": {"component": "kube-proxy", "tier": "node"},
                    },
                    "spec": {
                        "nodeName": name,
                        "hostNetwork": True,
                        "priorityClassName": "system-node-critical",
                        "containers": [{"name": "kube-proxy", "image": KUBE_PROXY_IMAGE}],
                    },
                },
            )

    @staticmethod
    def _node(cluster: Cluster, index: int, name: str) -> dict[str, Any]:
        version = "v" + cluster.kubernetes_version.lstrip("v")
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }

        return {
            "metadata": {
                "name": name,
                "labels": {
                    "agentpool": POOL,
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.azure.com/agentpool": POOL,
                    "kubernetes.azure.com/cluster": f"MC_{cluster.name}",
                    "kubernetes.azure.com/mode": "system",
                    "kubernetes.azure.com/node-image-version": NODE_IMAGE,
                    "kubernetes.azure.com/os-sku": "Ubuntu",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "Standard_D4ds_v5",
                    "topology.kubernetes.io/region": cluster.location,
                    "topology.kubernetes.io/zone": "0",
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {
                "podCIDR": f"10.244.{index}.0/24",
                "podCIDRs": [f"10.244.{index}.0/24"],
                "providerID": f"azure:///subscriptions/sandbox/resourceGroups/mc_{cluster.name}"
                f"/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{POOL}-12345678-vmss"
                f"/virtualMachines/{index}",
            },
            "status": {
                "conditions": [
                    condition(
                        "MemoryPressure",
                        "False",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                    ),
                    condition(
                        "DiskPressure",
                        "False",
                        "KubeletHasNoDiskPressure",
                        "kubelet has no disk pressure",
                    ),
                    condition(
                        "PIDPressure",
                        "False",
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    ),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [
                    {"type": "InternalIP", "address": f"10.224.0.{4 + index}"},
                    {"type": "Hostname", "address": name},
                ],
                "capacity": {"cpu": "4", "memory": "16365308Ki", "pods": "250"},
                "allocatable": {"cpu": "3860m", "memory": "12880124Ki", "pods": "250"},
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 22.04.5 LTS",
                    "kernelVersion": "5.15.0-1090-azure",
                    "containerRuntimeVersion": "containerd://1.7.29-1",
                    "kubeletVersion": version,
                    "kubeProxyVersion": version,
                    "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                    "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                    "bootID": str(uuid.uuid5(uuid.NAMESPACE_OID, name)),
                },
            },
        }

    # ---------------------------------------------------------------- controllers

    def reconcile(self, resource: Resource, obj: dict[str, Any]) -> None:
        """Called by the store, under its lock, after a create or a change of spec."""
        if resource is DEPLOYMENTS:
            self._deployment(obj)
        elif resource is REPLICASETS:
            self._replica_set(obj)
        elif resource is JOBS:
            self._job(obj)

    def event(
        self,
        involved: dict[str, Any],
        reason: str,
        message: str,
        component: str,
        kind: str = "Normal",
    ) -> None:
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.create(
            EVENTS,
            namespace,
            {
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}"},
                "involvedObject": {
                    "kind": involved["kind"],
                    "namespace": meta.get("namespace", ""),
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "apiVersion": involved["apiVersion"],
                    "resourceVersion": meta["resourceVersion"],
                },
                "reason": reason,
                "message": message,
                "source": {"component": component},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "type": kind,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": "",
            },
        )

    def _deployment(self, deployment: dict[str, Any]) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1))
        template = copy.deepcopy(spec["template"])
        pod_hash = _template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        owned = self.store.owned_by(REPLICASETS, namespace, meta["uid"])
        current = next((rs for rs in owned if rs["metadata"]["name"] == f"{name}-{pod_hash}"), None)
        if current is None:
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            current = self.store.create(
                REPLICASETS,
                namespace,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{name}-{pod_hash}",
                        "labels": template["metadata"]["labels"],
                        "annotations": {
                            "deployment.kubernetes.io/desired-replicas": str(replicas),
                            "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                            "deployment.kubernetes.io/revision": str(len(owned) + 1),
                        },
                        "ownerReferences": [_owner(deployment)],
                    },
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                },
            )
            self.event(
                deployment,
                "ScalingReplicaSet",
                f"Scaled up replica set {current['metadata']['name']} from 0 to {replicas}",
                "deployment-controller",
            )
        elif int(current["spec"].get("replicas", 1)) != replicas:
            current["spec"]["replicas"] = replicas
            current = self.store.update(
                REPLICASETS, namespace, current["metadata"]["name"], current
            )
        for old in owned:
            if old["metadata"]["name"] != current["metadata"]["name"] and old["spec"].get(
                "replicas"
            ):
                scaled_from = old["spec"]["replicas"]
                old["spec"]["replicas"] = 0
                self.store.update(REPLICASETS, namespace, old["metadata"]["name"], old)
                self.event(
                    deployment,
                    "ScalingReplicaSet",
                    f"Scaled down replica set {old['metadata']['name']} from {scaled_from} to 0",
                    "deployment-controller",
                )
        rs_name = current["metadata"]["name"]
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.set_status(
            DEPLOYMENTS,
            namespace,
            name,
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {
                        **_condition(
                            "Available",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                            stamp,
                        ),
                        "lastUpdateTime": stamp,
                    },
                    {
                        **_condition(
                            "Progressing",
                            "NewReplicaSetAvailable",
                            f'ReplicaSet "{rs_name}" has successfully progressed.',
                            stamp,
                        ),
                        "lastUpdateTime": stamp,
                    },
                ],
            },
        )

    def _replica_set(self, replica_set: dict[str, Any]) -> None:
        meta, spec = replica_set["metadata"], replica_set["spec"]
        namespace, name = meta["namespace"], meta["name"]
        wanted = int(spec.get("replicas", 1))
        pods = self.store.owned_by(PODS, namespace, meta["uid"])
        for pod in pods[wanted:]:
            self.store.delete(PODS, namespace, pod["metadata"]["name"])
            self.event(
                replica_set,
                "SuccessfulDelete",
                f"Deleted pod: {pod['metadata']['name']}",
                "replicaset-controller",
            )
        template = spec["template"]
        for _ in range(len(pods), wanted):
            pod = self.store.create(
                PODS,
                namespace,
                {
                    "metadata": {
                        "name": f"{name}-{_suffix()}",
                        "labels": copy.deepcopy(template.get("metadata", {}).get("labels", {})),
                        "annotations": copy.deepcopy(
                            template.get("metadata", {}).get("annotations", {})
                        ),
                        "ownerReferences": [_owner(replica_set)],
                    },
                    "spec": copy.deepcopy(template["spec"]),
                },
            )
            self.event(
                replica_set,
                "SuccessfulCreate",
                f"Created pod: {pod['metadata']['name']}",
                "replicaset-controller",
            )
        self.store.set_status(
            REPLICASETS,
            namespace,
            name,
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": wanted,
                "fullyLabeledReplicas": wanted,
                "readyReplicas": wanted,
                "availableReplicas": wanted,
            },
        )

    def _job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        namespace, name = meta["namespace"], meta["name"]
        if (job.get("status") or {}).get("completionTime"):
            return
        completions = int(spec.get("completions", 1))
        started = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        template = spec["template"]
        for _ in range(completions):
            pod = self.store.create(
                PODS,
                namespace,
                {
                    "metadata": {
                        "name": f"{name}-{_suffix()}",
                        "labels": copy.deepcopy(template["metadata"]["labels"]),
                        "ownerReferences": [_owner(job)],
                        "finalizers": ["batch.kubernetes.io/job-tracking"],
                    },
                    "spec": copy.deepcopy(template["spec"]),
                },
            )
            self.event(
                job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", "job-controller"
            )
            status = pod["status"]
            status["phase"] = "Succeeded"
            for condition in status["conditions"]:
                if condition["type"] in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
                    condition["status"] = "False"
                    condition["reason"] = "PodCompleted"
            for container in status["containerStatuses"]:
                container["ready"] = False
                container["started"] = False
                container["state"] = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": started,
                        "finishedAt": started,
                        "containerID": container["containerID"],
                    }
                }
            self.store.set_status(PODS, namespace, pod["metadata"]["name"], status)
        finished = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.set_status(
            JOBS,
            namespace,
            name,
            {
                "startTime": started,
                "completionTime": finished,
                "succeeded": completions,
                "ready": 0,
                "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    _condition(
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        finished,
                    ),
                    _condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        finished,
                    ),
                ],
            },
        )
        self.event(job, "Completed", "Job completed", "job-controller")


__all__ = ["SYSTEM_DEPLOYMENTS", "Controllers", "node_names"]

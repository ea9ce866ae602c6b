"""An AKS cluster's API server: TLS, Entra or client-certificate authentication, REST.

It serves what the kubernetes Python client and kubectl v1.32 ask for: discovery
(`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), the OpenAPI v3 index
kubectl's field validation reads, the kinds of :mod:`kubestore` (list, watch, get, create,
update, patch — JSON, merge, strategic merge, server-side apply — and delete), pod logs,
and tables for `kubectl get`; the simulated controllers of :mod:`kubecontrol` act on each
write. Access follows the principal's roles over the cluster (see `_authorize`).
Everything else answers 404 in the Kubernetes Status shape, as a real server does, so
clients fall back the way they would against an API server without those features.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socketserver
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import kubeproto
from .entra import Entra, TokenRejected
from .httpd import FaultBook, Request, RequestLog, Response, SandboxHTTPServer
from .kubecontrol import Controllers
from .kubestore import (
    APPLY_PATCH,
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    GROUPS,
    JOBS,
    JSON_PATCH,
    MERGE_PATCHES,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    RESOURCES,
    SERVICES,
    VERBS,
    KubeError,
    ObjectStore,
    Resource,
    bad_request,
    no_such_path,
    now,
    parse_stamp,
)
from .scenario import AKS_SERVER_APP, Cluster, KubeAccess

# A pod annotation whose text the pod's log endpoint returns instead of the made-up lines.
LOG_ANNOTATION = "sandbox.azpytest.io/log"
# The longest a watch waits for an event before it ends and the client watches again. The
# answer's headers leave only with its body, and a client that has what it waited for (kubectl
# wait) still waits for them, so this stays short.
WATCH_HOLD_S = 1.0


def human_duration(seconds: float) -> str:
    """A duration the way kubectl's AGE column shows it (apimachinery's HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


# -------------------------------------------------------------------- tables


def _column(
    name: str, kind: str, description: str, priority: int = 0, fmt: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_NAME_COLUMN = _column(
    "Name",
    "string",
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    fmt="name",
)
_AGE_COLUMN = _column(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.",
)


_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "namespaces": [
        _NAME_COLUMN,
        _column("Status", "string", "The status of the namespace"),
        _AGE_COLUMN,
    ],
    "configmaps": [_NAME_COLUMN, _column("Data", "string", "Number of data entries"), _AGE_COLUMN],
    "pods": [
        _NAME_COLUMN,
        _column(
            "Ready", "string", "The aggregate readiness state of this pod for accepting traffic."
        ),
        _column("Status", "string", "The aggregate status of the containers in this pod."),
        _column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have "
            "been restarted and when the last container in this pod "
            "has restarted.",
        ),
        _AGE_COLUMN,
        _column(
            "IP",
            "string",
            "IP address allocated to the pod. Routable at least within the "
            "cluster. Empty if not yet allocated.",
            1,
        ),
        _column(
            "Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1
        ),
        _column(
            "Nominated Node",
            "string",
            "nominatedNodeName is set when this pod preempts other pods on the node.",
            1,
        ),
        _column(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness.",
            1,
        ),
    ],
}


_COLUMNS["nodes"] = [
    _NAME_COLUMN,
    _column("Status", "string", "The status of the node"),
    _column("Roles", "string", "The roles of the node"),
    _AGE_COLUMN,
    _column("Version", "string", "Kubelet Version reported by the node."),
]
_COLUMNS["deployments"] = [
    _NAME_COLUMN,
    _column("Ready", "string", "Number of the pod with ready state"),
    _column("Up-to-date", "string", "Total number of non-terminated pods targeted by this "
            "deployment that have the desired template spec."),
    _column("Available", "string", "Total number of available pods (ready for at least "
            "minReadySeconds) targeted by this deployment."),
    _AGE_COLUMN,
]  # fmt: skip
_COLUMNS["replicasets"] = [
    _NAME_COLUMN,
    _column("Desired", "integer", "Replicas is the number of desired replicas."),
    _column("Current", "integer", "Replicas is the most recently observed number of replicas."),
    _column("Ready", "integer", "The number of ready replicas for this replica set."),
    _AGE_COLUMN,
]
_COLUMNS["jobs"] = [
    _NAME_COLUMN,
    _column("Status", "string", "Status of the job."),
    _column("Completions", "string", "The completion status of the job."),
    _column("Duration", "string", "Time required to complete the job."),
    _AGE_COLUMN,
]
_COLUMNS["events"] = [
    _column("Last Seen", "string", "Time when this Event was last observed."),
    _column("Type", "string", "Type of this event (Normal, Warning), new types could be added."),
    _column("Reason", "string", "Why the action was taken."),
    _column("Object", "string", "The object that this event is about."),
    _column("Message", "string", "A human-readable description of the status of this operation."),
]
_COLUMNS["services"] = [
    _NAME_COLUMN,
    _column("Type", "string", "Type determines how the Service is exposed."),
    _column("Cluster-IP", "string", "clusterIP is the IP address of the service."),
    _column("External-IP", "string", "List of IP addresses for which nodes accept traffic."),
    _column("Port(s)", "string", "The list of ports that are exposed by this service."),
    _AGE_COLUMN,
]
_GENERIC_COLUMNS = [_NAME_COLUMN, _AGE_COLUMN]


def _cells(resource: Resource, obj: dict[str, Any]) -> list[Any]:
    meta = obj["metadata"]
    age = human_duration((now() - parse_stamp(meta["creationTimestamp"])).total_seconds())
    status = obj.get("status") or {}
    if resource is NODES:
        node_ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        version = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
        return [meta["name"], "Ready" if node_ready else "NotReady", "<none>", age, version]
    if resource is DEPLOYMENTS:
        replicas = obj["spec"].get("replicas", 1)
        return [
            meta["name"],
            f"{status.get('readyReplicas', 0)}/{replicas}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
            age,
        ]
    if resource is REPLICASETS:
        return [
            meta["name"],
            obj["spec"].get("replicas", 1),
            status.get("replicas", 0),
            status.get("readyReplicas", 0),
            age,
        ]
    if resource is JOBS:
        done = status.get("completionTime")
        duration = "0s"
        if status.get("startTime"):
            end = parse_stamp(done) if done else now()
            duration = human_duration((end - parse_stamp(status["startTime"])).total_seconds())
        return [
            meta["name"],
            "Complete" if done else "Running",
            f"{status.get('succeeded', 0)}/{obj['spec'].get('completions', 1)}",
            duration,
            age,
        ]
    if resource is EVENTS:
        seen = obj.get("lastTimestamp") or meta["creationTimestamp"]
        involved = obj.get("involvedObject") or {}
        return [
            human_duration((now() - parse_stamp(seen)).total_seconds()),
            obj.get("type", "Normal"),
            obj.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
            obj.get("message", ""),
        ]
    if resource is SERVICES:
        spec = obj.get("spec") or {}
        ports = ",".join(
            f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []
        )
        return [
            meta["name"],
            spec.get("type", "ClusterIP"),
            spec.get("clusterIP", "<none>"),
            "<none>",
            ports or "<none>",
            age,
        ]
    if resource not in (NAMESPACES, CONFIGMAPS, PODS):
        return [meta["name"], age]
    if resource is NAMESPACES:
        return [meta["name"], obj.get("status", {}).get("phase", "Active"), age]
    if resource is CONFIGMAPS:
        return [meta["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]
    status = obj.get("status", {})
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    # kubectl shows a finished container's reason (Completed, Error) rather than the phase.
    reasons = [
        state.get("reason")
        for s in statuses
        for state in (s.get("state") or {}).values()
        if isinstance(state, dict) and state.get("reason")
    ]
    return [
        meta["name"],
        f"{ready}/{len(obj['spec']['containers'])}",
        reasons[0] if reasons else status.get("phase", "Pending"),
        str(restarts),
        age,
        status.get("podIP", "<none>"),
        obj["spec"].get("nodeName", "<none>"),
        "<none>",
        "<none>",
    ]


def _table(
    resource: Resource, items: list[dict[str, Any]], list_meta: dict[str, Any], include: str
) -> dict[str, Any]:
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": _cells(resource, obj)}
        if include == "Object":
            row["object"] = {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": _COLUMNS.get(resource.name, _GENERIC_COLUMNS),
        "rows": rows,
    }


# -------------------------------------------------------------------- the HTTP service


class KubeService:
    """The `kube` service behind one cluster's TLS server: authentication and the REST API."""

    name = "kube"

    def __init__(
        self,
        cluster: Cluster,
        tenant_id: str,
        entra: Entra,
        store: ObjectStore,
        address: Callable[[], str],
        stopping: threading.Event,
    ) -> None:
        self.cluster = cluster
        self.tenant_id = tenant_id
        self.entra = entra
        self.store = store
        self.address = address
        self.stopping = stopping
        # The verified client certificate of the connection this thread serves, if any.
        self.peer = threading.local()

    def serves(self, host: str) -> bool:
        return True

    def fault_response(self, status: int) -> Response:
        reason, message = _FAULTS.get(
            status,
            (
                "InternalError",
                'an error on the server ("") has prevented the request from succeeding',
            ),
        )
        return _json(status, KubeError(status, reason, message, {}).status())

    def handle(self, request: Request) -> Response:
        try:
            user = self._authenticate(request)
            if user is None:
                raise KubeError(401, "Unauthorized", "Unauthorized")
            response = self._route(request, user)
        except KubeError as exc:
            response = _json(exc.code, exc.status())
        response.headers["Audit-Id"] = str(uuid.uuid4())
        response.headers.setdefault("Cache-Control", "no-cache, private")
        return response

    # ---------------------------------------------------------------- authentication

    def _authenticate(self, request: Request) -> _User | None:
        """A client certificate of the cluster's CA, or (Entra clusters) an Entra token."""
        cert: dict[str, Any] | None = getattr(self.peer, "cert", None)
        if cert:
            subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
            request.who = str(subject.get("commonName", "x509"))
            # The admin credential's certificate is in system:masters: it may do anything.
            return _User(request.who, KubeAccess.ADMIN)
        if not self.cluster.entra:
            return None
        try:
            principal = self.entra.verify(
                request.bearer, audiences={AKS_SERVER_APP}, tenant_id=self.tenant_id
            )
        except TokenRejected:
            return None
        request.who = str(principal.claims.get("appid") or principal.app.client_id)
        app = principal.app
        access = self.cluster.access_of(app.name, app.client_id, app.object_id)
        return _User(str(principal.claims.get("oid") or app.object_id), access)

    @staticmethod
    def _authorize(
        user: _User, verb: str, resource: Resource, namespace: str | None, name: str
    ) -> None:
        """Azure RBAC for Kubernetes, simplified (README: the sandbox's cluster).

        A cluster user reads everything and writes namespaced objects and namespaces; a
        cluster admin also writes the other cluster-scoped kinds (nodes, cluster roles and
        their bindings); a principal with neither role is refused everything.
        """
        if _allows(user, verb, resource.namespaced or resource is NAMESPACES):
            return
        plural = resource.name
        where = (
            f'in the namespace "{namespace}"'
            if resource.namespaced and namespace
            else "at the cluster scope"
        )
        named = f' "{name}"' if name else ""
        details: dict[str, Any] = {"kind": plural}
        if name:
            details = {"name": name, **details}
        if resource.group:
            details["group"] = resource.group
        raise KubeError(
            403,
            "Forbidden",
            f'{resource.qualified}{named} is forbidden: User "{user.name}" cannot {verb} '
            f'resource "{plural}" in API group "{resource.group}" {where}: User does not have '
            "access to the resource in Azure. Update role assignment to allow access.",
            details,
        )

    # ---------------------------------------------------------------- routing

    def _route(self, request: Request, user: _User) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/version":
            return _json(200, self._version())
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(
                200,
                b"ok",
                {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
            )
        if path == "/api":
            return _json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address()}
                    ],
                },
            )
        if path == "/apis":
            groups = [_api_group(group) for group in GROUPS if group]
            return _json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return _json(200, _resource_list("", "v1"))
        if path == SELF_REVIEWS:
            return self._self_review(request, user)
        if path == "/openapi/v3":
            return _json(200, _openapi_root())
        if path.startswith("/openapi/v3/"):
            return _json(200, _openapi_group_version(path.removeprefix("/openapi/v3/")))
        parts = path.split("/")[1:]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3 and parts[1] in GROUPS and parts[1]:
            if parts[2] not in GROUPS[parts[1]]:
                raise no_such_path()
            group, rest = parts[1], parts[3:]
        elif parts[0] == "apis" and len(parts) == 2 and parts[1] in GROUPS and parts[1]:
            return _json(200, {"kind": "APIGroup", "apiVersion": "v1", **_api_group(parts[1])})
        else:
            raise no_such_path()
        if not rest:
            return _json(200, _resource_list(group, "v1"))
        if rest[0] == "namespaces" and len(rest) >= 3 and group == "":
            namespace: str | None = rest[1]
            rest = rest[2:]
        elif group and rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        else:
            namespace = None
        resource = RESOURCES.get(rest[0])
        if resource is None or resource.group != group:
            raise no_such_path()
        if namespace is not None and not resource.namespaced:
            raise no_such_path()
        if namespace is None and resource.namespaced and len(rest) > 1:
            raise no_such_path()
        if len(rest) == 1:
            return self._collection(request, user, resource, namespace)
        if len(rest) == 2:
            return self._item(request, user, resource, namespace or "", rest[1])
        if len(rest) == 3 and resource is PODS and rest[2] == "log":
            self._authorize(user, "get", resource, namespace, rest[1])
            return self._log(request, namespace or "", rest[1])
        if len(rest) == 3 and rest[2] == "status" and request.method == "GET":
            self._authorize(user, "get", resource, namespace, rest[1])
            return _json(200, self.store.get(resource, namespace or "", rest[1]))
        raise no_such_path()

    @staticmethod
    def _self_review(request: Request, user: _User) -> Response:
        """`kubectl auth can-i`: whether the caller may, by the rules of `_authorize`."""
        if request.method != "POST":
            raise _method_not_allowed()
        review = _body(request)
        spec = review.get("spec") if isinstance(review, dict) else None
        if not isinstance(spec, dict):
            raise bad_request("a SelfSubjectAccessReview needs a spec")
        attributes = spec.get("resourceAttributes") or {}
        verb = str(attributes.get("verb") or spec.get("nonResourceAttributes", {}).get("verb"))
        plural = str(attributes.get("resource", ""))
        known = RESOURCES.get(plural)
        namespaced = known.namespaced or known is NAMESPACES if known else True
        if attributes and not attributes.get("namespace") and known is None:
            namespaced = False
        allowed = _allows(user, verb, namespaced)
        status: dict[str, Any] = {"allowed": allowed}
        if allowed:
            status["reason"] = "Access granted by Azure RBAC"
        return _json(
            201,
            {
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
        )

    def _collection(
        self, request: Request, user: _User, resource: Resource, namespace: str | None
    ) -> Response:
        query = request.query
        verb = {"GET": "watch" if _true(query.get("watch")) else "list", "POST": "create"}
        if request.method in verb:
            self._authorize(user, verb[request.method], resource, namespace, "")
        if request.method == "GET":
            if _true(query.get("watch")):
                return self._watch(request, resource, namespace)
            try:
                limit = int(query.get("limit") or 0)
            except ValueError:
                raise bad_request(f"invalid limit: {query['limit']!r}") from None
            items, meta = self.store.select(
                resource,
                namespace,
                query.get("labelSelector", ""),
                query.get("fieldSelector", ""),
                limit,
                query.get("continue", ""),
            )
            if _wants_table(request):
                return _json(200, _table(resource, items, meta, _include(request)))
            for item in items:
                # Items of a list carry no kind or apiVersion; the list's kind says it.
                item.pop("kind", None)
                item.pop("apiVersion", None)
            return _json(
                200,
                {
                    "kind": f"{resource.kind}List",
                    "apiVersion": resource.api_version,
                    "metadata": meta,
                    "items": items,
                },
            )
        if request.method == "POST":
            if resource.namespaced and namespace is None:
                raise _method_not_allowed()
            created = self.store.create(
                resource, namespace or "", _body(request), dry_run=bool(query.get("dryRun"))
            )
            return _json(201, created)
        raise _method_not_allowed()

    def _watch(self, request: Request, resource: Resource, namespace: str | None) -> Response:
        query = request.query
        try:
            timeout = float(query.get("timeoutSeconds") or WATCH_HOLD_S)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from None
        events = self.store.watch(
            resource,
            namespace,
            query.get("resourceVersion", ""),
            query.get("labelSelector", ""),
            query.get("fieldSelector", ""),
            send_initial=_true(query.get("sendInitialEvents")),
            timeout_s=max(0.0, min(timeout, WATCH_HOLD_S)),
            stopping=self.stopping,
        )
        if _wants_table(request):
            for event in events:
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                    event["object"] = _table(resource, [obj], meta, _include(request))
        body = "".join(json.dumps(event) + "\n" for event in events)
        return Response(200, body.encode(), {"Content-Type": "application/json"})

    def _item(
        self, request: Request, user: _User, resource: Resource, namespace: str, name: str
    ) -> Response:
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if request.method in verb:
            self._authorize(user, verb[request.method], resource, namespace or None, name)
        if request.method == "GET":
            obj = self.store.get(resource, namespace, name)
            if _wants_table(request):
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return _json(200, _table(resource, [obj], meta, _include(request)))
            return _json(200, obj)
        if request.method == "PUT":
            return _json(200, self.store.update(resource, namespace, name, _body(request)))
        if request.method == "PATCH":
            content_type = _media_type(request)
            if content_type not in (*MERGE_PATCHES, JSON_PATCH, APPLY_PATCH):
                raise KubeError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted "
                    f"media types include: {JSON_PATCH}, {', '.join(MERGE_PATCHES)}, "
                    f"{APPLY_PATCH}",
                )
            patch = _body(request)
            if content_type == APPLY_PATCH:
                if resource.namespaced:
                    # Creating is what apply may do here: the caller must be allowed to.
                    self._authorize(user, "create", resource, namespace, "")
                obj, created = self.store.apply(
                    resource, namespace, name, patch, request.query.get("fieldManager", "")
                )
                return _json(201 if created else 200, obj)
            return _json(200, self.store.patch(resource, namespace, name, content_type, patch))
        if request.method == "DELETE":
            options = _body(request) if request.body else None
            dry_run = bool(request.query.get("dryRun")) or bool(
                isinstance(options, dict) and options.get("dryRun")
            )
            return _json(200, self.store.delete(resource, namespace, name, dry_run=dry_run))
        raise _method_not_allowed()

    def _log(self, request: Request, namespace: str, name: str) -> Response:
        if request.method != "GET":
            raise _method_not_allowed()
        query = request.query
        pod, container = self.store.log(namespace, name, query.get("container"))
        if _true(query.get("previous")):
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        annotations = pod["metadata"].get("annotations") or {}
        text = annotations.get(LOG_ANNOTATION)
        if text is None:
            spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
            command = " ".join(str(p) for p in [*spec.get("command", []), *spec.get("args", [])])
            text = (
                f"sandbox: pod {namespace}/{name}, container {container}, image "
                f"{spec['image']}\n"
                + (f"sandbox: running {command}\n" if command else "")
                + f"sandbox: container {container} is running\n"
            )
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        if _true(query.get("timestamps")):
            started = pod["metadata"]["creationTimestamp"].replace("Z", ".000000000Z")
            lines = [f"{started} {line}" for line in lines]
        tail = query.get("tailLines")
        if tail is not None and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[len(lines) - min(int(tail), len(lines)) :]
        body = "".join(lines).encode()
        limit = query.get("limitBytes")
        if limit is not None and limit.isdigit():
            body = body[: int(limit)]
        return Response(200, body, {"Content-Type": "text/plain"})

    def _version(self) -> dict[str, str]:
        version = self.cluster.kubernetes_version.lstrip("v")
        major, minor = [*version.split("."), "0", "0"][:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{version}",
            "gitCommit": hashlib.sha1(version.encode(), usedforsecurity=False).hexdigest(),
            "gitTreeState": "clean",
            "buildDate": "2025-04-22T16:02:27Z",
            "goVersion": "go1.23.6",
            "compiler": "gc",
            "platform": "linux/amd64",
        }


_FAULTS = {
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "the object has been modified"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", 'an error on the server ("") has prevented the request from succeeding'),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: (
        "Timeout",
        "the server was unable to return a response in the time allotted, but may "
        "still be processing the request",
    ),
}


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _method_not_allowed() -> KubeError:
    return KubeError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def _json(status: int, payload: Any) -> Response:
    # The API server says plain application/json; client-go compares it when negotiating.
    return Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _media_type(request: Request) -> str:
    return (request.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()


def _body(request: Request) -> Any:
    media = _media_type(request)
    try:
        if media in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.safe_load(request.body.decode("utf-8"))
        if media == "application/json" or media in MERGE_PATCHES or media == JSON_PATCH:
            return json.loads(request.body or b"null")
        if media == kubeproto.MEDIA_TYPE:
            return kubeproto.decode(request.body)
    except kubeproto.ProtoError as exc:
        raise KubeError(415, "UnsupportedMediaType", str(exc)) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from None
    raise KubeError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types "
        f"include: application/json, application/yaml, {kubeproto.MEDIA_TYPE}",
    )


def _wants_table(request: Request) -> bool:
    accept = (request.headers.get("Accept") or "").replace(" ", "")
    for choice in accept.split(","):
        params = {key: value for key, _, value in (p.partition("=") for p in choice.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
    return False


def _include(request: Request) -> str:
    return request.query.get("includeObject") or "Metadata"


def _api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for resource in GROUPS[group][version]:
        entry: dict[str, Any] = {
            "name": resource.name,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entry["storageVersionHash"] = base64.b64encode(
            hashlib.sha256(resource.qualified.encode()).digest()[:8]
        ).decode()
        resources.append(entry)
    if group == "":
        resources.append(
            {
                "name": "pods/log",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            }
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _openapi_root() -> dict[str, Any]:
    """The OpenAPI v3 index: one document per group version, as kubectl looks them up."""
    paths = {}
    for group, versions in GROUPS.items():
        for version in versions:
            where = f"apis/{group}/{version}" if group else f"api/{version}"
            digest = hashlib.sha512(where.encode()).hexdigest().upper()[:128]
            paths[where] = {"serverRelativeURL": f"/openapi/v3/{where}?hash={digest}"}
    return {"paths": paths}


def _openapi_group_version(where: str) -> dict[str, Any]:
    """A group version's OpenAPI v3 document, reduced to what kubectl reads from it.

    kubectl asks it one thing: whether a kind's PATCH takes the `fieldValidation` query
    parameter. It does, so kubectl leaves validation to the server (which, here, takes any
    field) instead of validating against the OpenAPI v2 schema, which is not served. No
    request body is described, so kubectl computes `kubectl apply`'s strategic merge patch
    from its built-in types.
    """
    parts = where.split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        raise no_such_path()
    if version not in GROUPS.get(group, {}):
        raise no_such_path()
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    for resource in GROUPS[group][version]:
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        parameters = [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in ("dryRun", "fieldManager", "fieldValidation")
        ]
        paths[f"{base}{scope}/{resource.name}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{resource.kind}",
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {
                    "group": group,
                    "version": version,
                    "kind": resource.kind,
                },
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths,
        "components": {},
    }


SELF_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def _allows(user: _User, verb: str, user_writable: bool) -> bool:
    """Whether `user` may `verb` a kind; cluster users write only `user_writable` kinds."""
    if user.access is KubeAccess.ADMIN:
        return True
    reads = verb in ("get", "list", "watch")
    return user.access is KubeAccess.USER and (reads or user_writable)


@dataclass(frozen=True)
class _User:
    """Who a request speaks for: the name the API server's messages use, and its access."""

    name: str
    access: KubeAccess


# -------------------------------------------------------------------- the server


class KubeAPIServer:
    """One cluster's API server on https://127.0.0.1:PORT, certificates from the sandbox CA."""

    def __init__(
        self,
        cluster: Cluster,
        tenant_id: str,
        entra: Entra,
        ca: trustme.CA,
        log: RequestLog,
        faults: FaultBook,
        stopping: threading.Event,
    ) -> None:
        self.cluster = cluster
        self.ca = ca
        self.log = log
        self.faults = faults
        self.stopping = stopping
        self.ca_pem: bytes = ca.cert_pem.bytes()
        self.store = ObjectStore(self.ca_pem.decode())
        self.controllers = Controllers(self.store)
        self.store.on_write = self.controllers.reconcile
        self.controllers.seed(cluster)
        self.service = KubeService(
            cluster,
            tenant_id,
            entra,
            self.store,
            lambda: self.url.removeprefix("https://"),
            stopping,
        )
        self._http: SandboxHTTPServer | None = None

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError(f"the API server of {self.cluster.name} is not running")
        return self._http.port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> KubeAPIServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost", common_name="apiserver").configure_cert(
            context
        )
        # Like the real API server: ask for a client certificate, accept a connection without.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=self.ca_pem.decode())
        service = self.service
        http = SandboxHTTPServer(
            context, lambda host: service, self.log, self.faults, self.stopping
        )
        handler = http.RequestHandlerClass
        peer = service.peer

        def remember_peer(
            request: Any, client_address: Any, server: SandboxHTTPServer
        ) -> socketserver.BaseRequestHandler:
            # Only the TLS socket knows the client certificate, and the handler serves this
            # one connection in this thread, so a thread-local carries it to the service.
            peer.cert = request.getpeercert() if isinstance(request, ssl.SSLSocket) else None
            try:
                return handler(request, client_address, server)
            finally:
                peer.cert = None

        http.RequestHandlerClass = remember_peer
        self._http = http
        http.serve_in_thread(f"sandbox-kube-{self.cluster.name}")
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def client_certificate(
        self, common_name: str = "masterclient", organization: str = "system:masters"
    ) -> tuple[bytes, bytes]:
        """A client certificate and key (PEM) the API server takes as that user and group."""
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError(f"cannot sign with a {type(ca_key).__name__}")
        ca_cert = x509.load_pem_x509_certificate(self.ca_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        issued = now()
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(issued - dt.timedelta(minutes=5))
            .not_valid_after(issued + dt.timedelta(days=730))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


__all__ = ["LOG_ANNOTATION", "KubeAPIServer", "KubeService", "human_duration"]

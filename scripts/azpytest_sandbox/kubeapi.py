"""An AKS cluster's API server: TLS, Entra or client-certificate authentication, core/v1 REST.

It serves what the kubernetes Python client and kubectl v1.32 ask for: discovery
(`/version`, `/api`, `/apis`, `/api/v1`), namespaces, configmaps and pods (list, get, create,
update, patch, delete; objects in :mod:`kubestore`), pod logs, and tables for `kubectl get`.
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
from .kubestore import (
    CONFIGMAPS,
    JSON_PATCH,
    MERGE_PATCHES,
    NAMESPACES,
    PODS,
    RESOURCES,
    VERBS,
    KubeError,
    ObjectStore,
    Resource,
    bad_request,
    no_such_path,
    now,
    parse_stamp,
)
from .scenario import AKS_SERVER_APP, Cluster

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


def _cells(resource: Resource, obj: dict[str, Any]) -> list[Any]:
    meta = obj["metadata"]
    age = human_duration((now() - parse_stamp(meta["creationTimestamp"])).total_seconds())
    if resource is NAMESPACES:
        return [meta["name"], obj.get("status", {}).get("phase", "Active"), age]
    if resource is CONFIGMAPS:
        return [meta["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]
    status = obj.get("status", {})
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    return [
        meta["name"],
        f"{ready}/{len(obj['spec']['containers'])}",
        status.get("phase", "Pending"),
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
            row["object"] = {"kind": resource.kind, "apiVersion": "v1", **obj}
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
        "columnDefinitions": _COLUMNS[resource.name],
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
            if not self._authenticate(request):
                raise KubeError(401, "Unauthorized", "Unauthorized")
            response = self._route(request)
        except KubeError as exc:
            response = _json(exc.code, exc.status())
        response.headers["Audit-Id"] = str(uuid.uuid4())
        response.headers.setdefault("Cache-Control", "no-cache, private")
        return response

    # ---------------------------------------------------------------- authentication

    def _authenticate(self, request: Request) -> bool:
        """A client certificate of the cluster's CA, or (Entra clusters) an Entra token."""
        cert: dict[str, Any] | None = getattr(self.peer, "cert", None)
        if cert:
            subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
            request.who = str(subject.get("commonName", "x509"))
            return True
        if not self.cluster.entra:
            return False
        try:
            principal = self.entra.verify(
                request.bearer, audiences={AKS_SERVER_APP}, tenant_id=self.tenant_id
            )
        except TokenRejected:
            return False
        request.who = str(principal.claims.get("appid") or principal.app.client_id)
        return True

    # ---------------------------------------------------------------- routing

    def _route(self, request: Request) -> Response:
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
            return _json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return _json(200, _resource_list())
        parts = path.split("/")[1:]
        if parts[:2] != ["api", "v1"]:
            raise no_such_path()
        rest = parts[2:]
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
            resource = RESOURCES.get(rest[0])
            if resource is None or not resource.namespaced:
                raise no_such_path()
        else:
            namespace = None
            resource = RESOURCES.get(rest[0])
            if resource is None or (resource.namespaced and len(rest) > 1):
                raise no_such_path()
        if len(rest) == 1:
            return self._collection(request, resource, namespace)
        if len(rest) == 2:
            return self._item(request, resource, namespace or "", rest[1])
        if len(rest) == 3 and resource is PODS and rest[2] == "log":
            return self._log(request, namespace or "", rest[1])
        raise no_such_path()

    def _collection(self, request: Request, resource: Resource, namespace: str | None) -> Response:
        query = request.query
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
                    "apiVersion": "v1",
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

    def _item(self, request: Request, resource: Resource, namespace: str, name: str) -> Response:
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
            if content_type not in (*MERGE_PATCHES, JSON_PATCH):
                raise KubeError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted "
                    f"media types include: {JSON_PATCH}, {', '.join(MERGE_PATCHES)}",
                )
            patch = _body(request)
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


def _resource_list() -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for resource in RESOURCES.values():
        entry: dict[str, Any] = {
            "name": resource.name,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
            "shortNames": list(resource.short_names),
        }
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entry["storageVersionHash"] = base64.b64encode(
            hashlib.sha256(resource.name.encode()).digest()[:8]
        ).decode()
        resources.append(entry)
    resources.append(
        {
            "name": "pods/log",
            "singularName": "",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get"],
        }
    )
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}


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

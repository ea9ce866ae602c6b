"""The objects of the sandbox's AKS API server, in memory: the core, apps, batch, rbac and
policy kinds an AKS suite touches (the registry `KINDS`).

The bookkeeping and refusals of a real API server: uid, resourceVersion, creationTimestamp,
generateName, name validation (422), AlreadyExists (409), optimistic concurrency (409
Conflict), label and field selectors, paging, JSON, merge and strategic merge patches,
server-side apply, owner-reference garbage collection, and what defaulting and the
controllers add (a pod is Running at once; every namespace gets kube-root-ca.crt).
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NODE_NAME = "aks-nodepool1-12345678-vmss000000"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
# The alphabet Kubernetes draws generateName suffixes from (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# How many changes the store remembers for watches; older resourceVersions get 410 Expired.
WATCH_HISTORY = 1000
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCHES = (MERGE_PATCH, STRATEGIC_PATCH)
JSON_PATCH = "application/json-patch+json"
# Server-side apply (`kubectl apply --server-side`): create, or merge into, with a field manager.
APPLY_PATCH = "application/apply-patch+yaml"


# -------------------------------------------------------------------- errors


class KubeError(Exception):
    """A failure the API server reports as a `Status` object."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _not_found(resource: Resource, name: str) -> KubeError:
    details = {"name": name, "kind": resource.name}
    if resource.group:
        details["group"] = resource.group
    return KubeError(404, "NotFound", f'{resource.qualified} "{name}" not found', details)


def _details(resource: Resource, name: str) -> dict[str, Any]:
    details = {"name": name, "kind": resource.name}
    if resource.group:
        details["group"] = resource.group
    return details


def no_such_path() -> KubeError:
    return KubeError(404, "NotFound", "the server could not find the requested resource", {})


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def _invalid(kind: str, name: str, causes: list[tuple[str, str, str]]) -> KubeError:
    """422 Invalid; each cause is (field, reason, message) as the API server words them."""
    texts = [f"{field}: {message}" for field, _, message in causes]
    summary = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    return KubeError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        {
            "name": name,
            "kind": kind,
            "causes": [
                {"reason": reason, "message": message, "field": field}
                for field, reason, message in causes
            ],
        },
    )


# -------------------------------------------------------------------- resources


# Names of RBAC objects are path segments: anything but "/" and "%" ("system:masters" is one).
_SEGMENT = re.compile(r"[^/%]+")
_SEGMENT_MESSAGE = "may not contain '/' or '%'"


@dataclass(frozen=True)
class Resource:
    name: str  # the plural, as in the URL
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...]
    name_pattern: re.Pattern[str]
    name_message: str
    fields: tuple[str, ...]  # field selectors served besides metadata.name and .namespace
    categories: tuple[str, ...] = ()
    group: str = ""  # "" is the core group, served under /api/v1
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How errors name the resource: `deployments.apps`, `pods`."""
        return f"{self.name}.{self.group}" if self.group else self.name


def _kind(
    name: str,
    kind: str,
    short: tuple[str, ...] = (),
    group: str = "",
    namespaced: bool = True,
    fields: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    pattern: re.Pattern[str] = _SUBDOMAIN,
) -> Resource:
    message = {_LABEL: _LABEL_MESSAGE, _SUBDOMAIN: _SUBDOMAIN_MESSAGE}.get(
        pattern, _SEGMENT_MESSAGE
    )
    return Resource(
        name, kind.lower(), kind, namespaced, short, pattern, message, fields, categories, group
    )


NAMESPACES = _kind(
    "namespaces", "Namespace", ("ns",), namespaced=False, fields=("status.phase",), pattern=_LABEL
)
CONFIGMAPS = _kind("configmaps", "ConfigMap", ("cm",))
PODS = _kind(
    "pods",
    "Pod",
    ("po",),
    fields=(
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    categories=("all",),
)
SECRETS = _kind("secrets", "Secret", fields=("type",))
SERVICES = _kind("services", "Service", ("svc",), categories=("all",), pattern=_LABEL)
SERVICE_ACCOUNTS = _kind("serviceaccounts", "ServiceAccount", ("sa",))
EVENTS = _kind(
    "events",
    "Event",
    ("ev",),
    fields=(
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
        "source",
    ),
)
NODES = _kind("nodes", "Node", ("no",), namespaced=False, fields=("spec.unschedulable",))
DEPLOYMENTS = _kind("deployments", "Deployment", ("deploy",), "apps", categories=("all",))
REPLICASETS = _kind("replicasets", "ReplicaSet", ("rs",), "apps", categories=("all",))
JOBS = _kind("jobs", "Job", (), "batch", fields=("status.successful",), categories=("all",))
_RBAC = "rbac.authorization.k8s.io"
ROLES = _kind("roles", "Role", (), _RBAC, pattern=_SEGMENT)
ROLE_BINDINGS = _kind("rolebindings", "RoleBinding", (), _RBAC, pattern=_SEGMENT)
CLUSTER_ROLES = _kind("clusterroles", "ClusterRole", (), _RBAC, False, pattern=_SEGMENT)
CLUSTER_ROLE_BINDINGS = _kind(
    "clusterrolebindings", "ClusterRoleBinding", (), _RBAC, False, pattern=_SEGMENT
)
PDBS = _kind("poddisruptionbudgets", "PodDisruptionBudget", ("pdb",), "policy")
KINDS = (
    NAMESPACES,
    CONFIGMAPS,
    PODS,
    SECRETS,
    SERVICES,
    SERVICE_ACCOUNTS,
    EVENTS,
    NODES,
    DEPLOYMENTS,
    REPLICASETS,
    JOBS,
    ROLES,
    ROLE_BINDINGS,
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    PDBS,
)
# Every plural is unique across the groups served, so the plural alone keys a resource.
RESOURCES = {r.name: r for r in KINDS}
# group -> version -> resources; the core group is "".
GROUPS: dict[str, dict[str, list[Resource]]] = {}
for _resource in KINDS:
    GROUPS.setdefault(_resource.group, {}).setdefault(_resource.version, []).append(_resource)
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# Kinds whose spec changes bump metadata.generation (and whose controllers report
# status.observedGeneration).
_GENERATED = frozenset({"deployments", "replicasets", "jobs", "poddisruptionbudgets"})


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


# -------------------------------------------------------------------- selectors

_REQUIREMENT = re.compile(
    r"^(?P<not>!)?(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)"
    r"(?:(?P<op>==|=|!=)(?P<value>[-A-Za-z0-9_.]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?$"
)

Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


def parse_label_selector(text: str) -> list[Requirement]:
    """`a=b,c!=d,e,!f,g in (x,y),h notin (z)` -> requirements; KubeError 400 if malformed."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    requirements: list[Requirement] = []
    for term in (t.strip() for t in terms):
        if not term:
            continue
        match = _REQUIREMENT.match(term)
        if match is None or (match["not"] and (match["op"] or match["set"])):
            raise bad_request(
                f"unable to parse requirement: found '{term}', expected: "
                "'=', '!=', '==', 'in', notin'"
            )
        if match["not"]:
            requirements.append((match["key"], "!", frozenset()))
        elif match["op"]:
            op = "!=" if match["op"] == "!=" else "="
            requirements.append((match["key"], op, frozenset([match["value"]])))
        elif match["set"]:
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append((match["key"], match["set"], values))
        else:
            requirements.append((match["key"], "exists", frozenset()))
    return requirements


def labels_match(labels: dict[str, str], requirements: list[Requirement]) -> bool:
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "exists": present,
            "!": not present,
            "=": present and value in values,
            "in": present and value in values,
            "!=": not present or value not in values,
            "notin": not present or value not in values,
        }[op]
        if not ok:
            return False
    return True


def _field_requirements(resource: Resource, text: str) -> list[tuple[str, bool, str]]:
    """`metadata.name=x,status.phase!=Failed` -> (field, wanted equal, value)."""
    served = ("metadata.name", "metadata.namespace", *resource.fields)
    out = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        match = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", term)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = match.groups()
        if field not in served:
            raise bad_request(f"field label not supported: {field}")
        out.append((field, op != "!=", value))
    return out


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


# -------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patches are applied the same way)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch, as `kubectl apply` and `kubectl patch` send by default.

    Like a merge patch, except that lists of named objects (containers, env, volumes, ports
    with a name) merge item by item on `name`, an item `{"$patch": "delete", "name": n}`
    removes one, and the other `$` directives (`$setElementOrder/…`, `$retainKeys`) are read
    as no-ops. Other lists are replaced, as the real merge does for lists without a merge key.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, list)
            and _named(value)
            and isinstance(current, list)
            and (_named(current))
        ):
            merged = [copy.deepcopy(item) for item in current]
            for item in value:
                at = next((i for i, old in enumerate(merged) if old["name"] == item["name"]), None)
                if item.get("$patch") == "delete":
                    if at is not None:
                        merged.pop(at)
                elif at is None:
                    merged.append(strategic_merge({}, item))
                else:
                    merged[at] = strategic_merge(merged[at], item)
            result[key] = merged
        else:
            result[key] = strategic_merge(current, value)
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)

    def split(pointer: Any) -> list[str]:
        if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
            raise KubeError(422, "Invalid", f"invalid JSON pointer: {pointer!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]

    def parent(tokens: list[str]) -> tuple[Any, str]:
        node = doc
        for token in tokens[:-1]:
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node, tokens[-1]

    def get(tokens: list[str]) -> Any:
        node = doc
        for token in tokens:
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def remove(tokens: list[str]) -> Any:
        node, last = parent(tokens)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    def add(tokens: list[str], value: Any) -> None:
        nonlocal doc
        if not tokens:
            doc = value
            return
        node, last = parent(tokens)
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value

    for op in operations:
        if not isinstance(op, dict):
            raise bad_request("a JSON patch operation must be an object")
        kind, path = op.get("op"), split(op.get("path"))
        try:
            if kind == "add":
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                get(path)
                remove(path)
                add(path, copy.deepcopy(op.get("value")))
            elif kind == "move":
                add(path, remove(split(op.get("from"))))
            elif kind == "copy":
                add(path, copy.deepcopy(get(split(op.get("from")))))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise KubeError(422, "Invalid", f"the test operation failed at {op['path']}")
            else:
                raise bad_request(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise KubeError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: "
                f"{kind} operation does not apply: doc is missing path: "
                f"{op.get('path')}",
            ) from None
    return doc


# -------------------------------------------------------------------- the object store


class ObjectStore:
    """The objects of every kind in memory, with Kubernetes' bookkeeping and errors.

    Every method takes the lock for its whole read-check-write, so concurrent clients see
    the conflicts and the resourceVersions a real API server would give them.
    """

    def __init__(self, root_ca_pem: str) -> None:
        # Called (under the lock) after each create or update of an object's spec: the
        # simulated controllers (see kubecontrol) act on write, so a client sees the result
        # of its write at once and watches deliver every step.
        self.on_write: Callable[[Resource, dict[str, Any]], None] | None = None
        # The nodes new pods are placed on, in turn: (name, internal IP).
        self.nodes: list[tuple[str, str]] = [(NODE_NAME, "10.224.0.4")]
        self._placed = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # Recent changes for watches: (resourceVersion, event type, resource, object).
        self._history: collections.deque[tuple[int, str, str, dict[str, Any]]] = collections.deque(
            maxlen=WATCH_HISTORY
        )
        self._version = 1000
        self._root_ca = root_ca_pem
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            name: {} for name in RESOURCES
        }
        for name in INITIAL_NAMESPACES:
            self.create(NAMESPACES, "", {"metadata": {"name": name}})

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._version)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    # ---------------------------------------------------------------- reads

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            found = self._objects[resource.name].get((namespace, name))
            if found is None:
                raise _not_found(resource, name)
            return copy.deepcopy(found)

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Matching objects in (namespace, name) order, and the list's metadata."""
        labels = parse_label_selector(label_selector)
        fields = _field_requirements(resource, field_selector)
        start: list[str] | None = None
        if continue_token:
            try:
                start = json.loads(base64.urlsafe_b64decode(continue_token.encode()))["start"]
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start "
                    "resourceVersion (version meta.k8s.io/v1)"
                ) from None
        with self._lock:
            version = str(self._version)
            keys = sorted(
                key
                for key in self._objects[resource.name]
                if namespace is None or key[0] == namespace
            )
            items = []
            for key in keys:
                if start is not None and list(key) < start:
                    continue
                obj = self._objects[resource.name][key]
                if not labels_match(obj["metadata"].get("labels") or {}, labels):
                    continue
                if not all((_field_value(obj, f) == v) == eq for f, eq, v in fields):
                    continue
                items.append(copy.deepcopy(obj))
        meta: dict[str, Any] = {"resourceVersion": version}
        if limit > 0 and len(items) > limit:
            following = items[limit]["metadata"]
            token = json.dumps(
                {
                    "v": "meta.k8s.io/v1",
                    "rv": int(version),
                    "start": [following.get("namespace", ""), following["name"]],
                }
            )
            meta["continue"] = base64.urlsafe_b64encode(token.encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return items, meta

    # ---------------------------------------------------------------- writes

    def create(
        self, resource: Resource, namespace: str, body: Any, dry_run: bool = False
    ) -> dict[str, Any]:
        obj = _object_of(resource, body)
        meta = obj["metadata"]
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not isinstance(prefix, str) or not prefix:
                raise _invalid(
                    resource.kind,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = prefix[:58] + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
        name = meta["name"]
        _validate(resource, obj)
        with self._lock:
            if resource.namespaced and ("", namespace) not in self._objects[NAMESPACES.name]:
                raise _not_found(NAMESPACES, namespace)
            key = (namespace if resource.namespaced else "", name)
            if key in self._objects[resource.name]:
                raise KubeError(
                    409,
                    "AlreadyExists",
                    f'{resource.qualified} "{name}" already exists',
                    _details(resource, name),
                )
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = self._next_version()
            meta["creationTimestamp"] = _stamp(now())
            meta.pop("deletionTimestamp", None)
            meta.pop("selfLink", None)
            # A new object's status is the server's to set, whatever the client sent.
            obj.pop("status", None)
            if resource.name in _GENERATED:
                meta["generation"] = 1
            if resource is PODS:
                obj.setdefault("spec", {}).setdefault("nodeName", self._place())
            _defaults(resource, obj, self.nodes)
            if not dry_run:
                self._objects[resource.name][key] = obj
                self._record("ADDED", resource, obj)
                if self.on_write is not None:
                    self.on_write(resource, copy.deepcopy(obj))
                if resource is NAMESPACES:
                    # The root-ca-cert-publisher puts this configmap into every namespace.
                    self.create(
                        CONFIGMAPS,
                        name,
                        {
                            "metadata": {
                                "name": "kube-root-ca.crt",
                                "annotations": {
                                    "kubernetes.io/description": (
                                        "Contains a CA bundle that can be used to verify the "
                                        "kube-apiserver when using internal endpoints such as the "
                                        "internal service IP or kubernetes.default.svc. No other "
                                        "usage is guaranteed across distributions of Kubernetes "
                                        "clusters."
                                    )
                                },
                            },
                            "data": {"ca.crt": self._root_ca},
                        },
                    )
            return copy.deepcopy(obj)

    def update(self, resource: Resource, namespace: str, name: str, body: Any) -> dict[str, Any]:
        obj = _object_of(resource, body)
        with self._lock:
            return self._replace(resource, namespace, name, obj)

    def patch(
        self, resource: Resource, namespace: str, name: str, content_type: str, patch: Any
    ) -> dict[str, Any]:
        with self._lock:
            current = self.get(resource, namespace, name)
            if content_type == JSON_PATCH:
                patched = json_patch(current, patch)
            else:
                if not isinstance(patch, dict):
                    raise bad_request("the body of a merge patch must be a JSON object")
                merge = strategic_merge if content_type == STRATEGIC_PATCH else merge_patch
                patched = merge(current, patch)
            return self._replace(resource, namespace, name, _object_of(resource, patched))

    def apply(
        self, resource: Resource, namespace: str, name: str, body: Any, manager: str
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply: the object created from `body`, or `body` merged into it.

        Returns the object and whether it was created. Field ownership is recorded (one
        managedFields entry per manager) but not enforced: there are no apply conflicts.
        """
        if not manager:
            raise bad_request(
                "PATCH, application/apply-patch+yaml requests require fieldManager to be set"
            )
        applied = _object_of(resource, body)
        if applied["metadata"].get("name", name) != name:
            raise bad_request(
                f"the name of the object ({applied['metadata']['name']}) does not match the "
                f"name on the URL ({name})"
            )
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": resource.api_version,
            "time": _stamp(now()),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_of(applied),
        }
        with self._lock:
            key = (namespace if resource.namespaced else "", name)
            if key not in self._objects[resource.name]:
                applied["metadata"]["name"] = name
                applied["metadata"]["managedFields"] = [entry]
                return self.create(resource, namespace, applied), True
            current = self.get(resource, namespace, name)
            merged = strategic_merge(current, applied)
            others = [
                m
                for m in current["metadata"].get("managedFields") or []
                if not (m.get("manager") == manager and m.get("operation") == "Apply")
            ]
            merged["metadata"]["managedFields"] = [*others, entry]
            merged["metadata"].pop("resourceVersion", None)
            return self._replace(resource, namespace, name, merged), False

    def set_status(
        self, resource: Resource, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """What a controller writes to the status subresource (no controller is woken)."""
        with self._lock:
            key = (namespace if resource.namespaced else "", name)
            obj = self._objects[resource.name].get(key)
            if obj is None:
                raise _not_found(resource, name)
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = self._next_version()
            self._record("MODIFIED", resource, obj)
            return copy.deepcopy(obj)

    def owned_by(self, resource: Resource, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The objects of `resource` in `namespace` whose controller is the object `uid`."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects[resource.name].items())
                if ns == namespace
                and any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or [])
            ]

    def _place(self) -> str:
        self._placed += 1
        return self.nodes[(self._placed - 1) % len(self.nodes)][0]

    def _replace(
        self, resource: Resource, namespace: str, name: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the "
                f"name on the URL ({name})"
            )
        if resource.namespaced and meta.get("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        key = (namespace if resource.namespaced else "", name)
        current = self._objects[resource.name].get(key)
        if current is None:
            raise _not_found(resource, name)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise KubeError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object '
                "has been modified; please apply your changes to the latest version and try "
                "again",
                _details(resource, name),
            )
        if resource is CONFIGMAPS and current.get("immutable") is True:
            for field in ("data", "binaryData"):
                if obj.get(field) != current.get(field):
                    raise _invalid(
                        resource.kind,
                        name,
                        [
                            (
                                field,
                                "FieldValueForbidden",
                                "Forbidden: field is immutable when `immutable` is set",
                            )
                        ],
                    )
        meta["name"] = name
        if resource.namespaced:
            meta["namespace"] = namespace
        for kept in ("uid", "creationTimestamp"):
            meta[kept] = current["metadata"][kept]
        if "status" in current:
            # status is a subresource: a write to the object itself leaves it alone.
            obj["status"] = copy.deepcopy(current["status"])
        if resource.name in _GENERATED:
            generation = int(current["metadata"].get("generation", 1))
            changed = obj.get("spec") != current.get("spec")
            meta["generation"] = generation + 1 if changed else generation
        if resource is PODS:
            obj.setdefault("spec", {}).setdefault("nodeName", current["spec"].get("nodeName"))
        _validate(resource, obj)
        _defaults(resource, obj, self.nodes)
        meta["resourceVersion"] = self._next_version()
        self._objects[resource.name][key] = obj
        self._record("MODIFIED", resource, obj)
        if self.on_write is not None and obj.get("spec") != current.get("spec"):
            self.on_write(resource, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def delete(
        self, resource: Resource, namespace: str, name: str, dry_run: bool = False
    ) -> dict[str, Any]:
        """The object as the API server returns it from a DELETE."""
        key = (namespace if resource.namespaced else "", name)
        with self._lock:
            current = self._objects[resource.name].get(key)
            if current is None:
                raise _not_found(resource, name)
            if resource is NAMESPACES and name in PROTECTED_NAMESPACES:
                raise KubeError(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            gone = copy.deepcopy(current)
            if dry_run:
                return gone
            del self._objects[resource.name][key]
            self._collect_garbage(current["metadata"]["uid"])
            if resource is NAMESPACES:
                for owned_resource in RESOURCES.values():
                    objects = self._objects[owned_resource.name]
                    for owned in [k for k in objects if k[0] == name]:
                        removed = objects.pop(owned)
                        removed["metadata"]["resourceVersion"] = self._next_version()
                        self._record("DELETED", owned_resource, removed)
            gone["metadata"]["resourceVersion"] = self._next_version()
            self._record("DELETED", resource, gone)
        if resource not in (NAMESPACES, PODS):
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {**_details(resource, name), "uid": gone["metadata"]["uid"]},
            }
        # Namespaces and pods come back as they are at the start of their (here instant) end.
        gone["metadata"]["deletionTimestamp"] = _stamp(now())
        if resource is NAMESPACES:
            gone["status"] = {"phase": "Terminating"}
        else:
            gone["metadata"]["deletionGracePeriodSeconds"] = 30
        return gone

    def _collect_garbage(self, uid: str) -> None:
        """Delete, in the background as the garbage collector does, what `uid` owned."""
        for resource in KINDS:
            objects = self._objects[resource.name]
            for key, obj in list(objects.items()):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    removed = objects.pop(key)
                    removed["metadata"]["resourceVersion"] = self._next_version()
                    self._record("DELETED", resource, removed)
                    self._collect_garbage(removed["metadata"]["uid"])

    # ---------------------------------------------------------------- watches

    def _record(self, event: str, resource: Resource, obj: dict[str, Any]) -> None:
        version = int(obj["metadata"]["resourceVersion"])
        self._history.append((version, event, resource.name, copy.deepcopy(obj)))
        self._changed.notify_all()

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        since: str,
        label_selector: str = "",
        field_selector: str = "",
        send_initial: bool = False,
        timeout_s: float = 1.0,
        stopping: threading.Event | None = None,
    ) -> list[dict[str, Any]]:
        """The watch events after resourceVersion `since`, waiting up to `timeout_s` for one.

        The API server streams events for as long as a watch lasts; here a watch answers
        with the events there are (or none at its timeout) and ends, and the client watches
        again from the last resourceVersion it saw, as it does whenever a watch ends.
        """
        labels = parse_label_selector(label_selector)
        fields = _field_requirements(resource, field_selector)

        def matches(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            return (
                (namespace is None or meta.get("namespace", "") == namespace)
                and labels_match(meta.get("labels") or {}, labels)
                and all((_field_value(obj, f) == v) == eq for f, eq, v in fields)
            )

        deadline = time.monotonic() + timeout_s
        with self._lock:
            if send_initial or since in ("", "0"):
                # No resourceVersion: the current state first, as synthetic ADDED events.
                events = [
                    {"type": "ADDED", "object": copy.deepcopy(obj)}
                    for _, obj in sorted(self._objects[resource.name].items())
                    if matches(obj)
                ]
                if send_initial:
                    events.append(_bookmark(resource, str(self._version), initial_end=True))
                if events:
                    return events
                start = self._version
            else:
                try:
                    start = int(since)
                except ValueError:
                    raise bad_request(f"invalid resource version: {since}") from None
                oldest = self._history[0][0] if self._history else self._version
                if len(self._history) == self._history.maxlen and start < oldest - 1:
                    expired = KubeError(
                        410, "Expired", f"too old resource version: {start} ({oldest})"
                    )
                    return [{"type": "ERROR", "object": expired.status()}]
            while True:
                events = [
                    {"type": event, "object": copy.deepcopy(obj)}
                    for version, event, name, obj in self._history
                    if version > start and name == resource.name and matches(obj)
                ]
                remaining = deadline - time.monotonic()
                if events or remaining <= 0 or (stopping is not None and stopping.is_set()):
                    return events
                self._changed.wait(min(remaining, 0.25))

    def log(self, namespace: str, name: str, container: str | None) -> tuple[dict[str, Any], str]:
        """The pod and the container whose log is asked for; KubeError if none fits."""
        pod = self.get(PODS, namespace, name)
        names = [str(c.get("name")) for c in pod["spec"]["containers"]]
        if container is None:
            if len(names) > 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose "
                    f"one of: [{' '.join(names)}]"
                )
            container = names[0]
        elif container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        return pod, container


def _bookmark(resource: Resource, version: str, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": version}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta},
    }


def _object_of(resource: Resource, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be a {resource.kind} object")
    obj = copy.deepcopy(body)
    kind, version = obj.get("kind"), obj.get("apiVersion")
    expected = resource.api_version
    if kind not in (None, "", resource.kind) or version not in (None, "", expected):
        raise bad_request(
            f"the API version in the data ({version}) does not match the expected API version "
            f"({expected})"
            if version not in (None, "", expected)
            else f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
        )
    obj["kind"], obj["apiVersion"] = resource.kind, expected
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return obj


def _validate(resource: Resource, obj: dict[str, Any]) -> None:
    name = str(obj["metadata"].get("name", ""))
    limit = 63 if resource.name_pattern is _LABEL else 253
    causes: list[tuple[str, str, str]] = []
    if not resource.name_pattern.fullmatch(name):
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": {resource.name_message}',
            )
        )
    elif len(name) > limit:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be no more than {limit} characters',
            )
        )
    if resource is PODS:
        spec = obj.get("spec")
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers:
            causes.append(("spec.containers", "FieldValueRequired", "Required value"))
        else:
            for i, container in enumerate(containers):
                where = f"spec.containers[{i}]"
                if not isinstance(container, dict):
                    causes.append((where, "FieldValueInvalid", "Invalid value: not an object"))
                    continue
                cname = container.get("name")
                if not cname:
                    causes.append((f"{where}.name", "FieldValueRequired", "Required value"))
                elif not isinstance(cname, str) or not _LABEL.fullmatch(cname):
                    causes.append(
                        (
                            f"{where}.name",
                            "FieldValueInvalid",
                            f'Invalid value: "{cname}": {_LABEL_MESSAGE}',
                        )
                    )
                if not container.get("image"):
                    causes.append((f"{where}.image", "FieldValueRequired", "Required value"))
    if resource in (DEPLOYMENTS, REPLICASETS, JOBS):
        spec = obj.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        template = spec.get("template")
        pod_spec = template.get("spec") if isinstance(template, dict) else None
        containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
        if not isinstance(containers, list) or not containers:
            causes.append(("spec.template.spec.containers", "FieldValueRequired", "Required value"))
        if resource is not JOBS and not isinstance(spec.get("selector"), dict):
            causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    if causes:
        raise _invalid(resource.kind, name, causes)


def _fields_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A FieldsV1 set naming the fields of `obj` (lists of named items keyed by name)."""

    def walk(value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(value, dict):
            for key, item in value.items():
                out[f"f:{key}"] = walk(item)
        elif isinstance(value, list) and _named(value):
            for item in value:
                out[f'k:{{"name":"{item["name"]}"}}'] = {".": {}, **walk(item)}
        return out

    fields = walk({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")})
    meta = fields.get("f:metadata", {})
    for key in ("f:name", "f:namespace"):
        meta.pop(key, None)
    if not meta:
        fields.pop("f:metadata", None)
    return fields


def _defaults(resource: Resource, obj: dict[str, Any], nodes: list[tuple[str, str]]) -> None:
    """What the API server's defaulting and the controllers add to a new object."""
    meta = obj["metadata"]
    if resource is NAMESPACES:
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif resource is PODS:
        _pod_defaults(obj, dict(nodes))
    elif resource in (DEPLOYMENTS, REPLICASETS):
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        if resource is DEPLOYMENTS:
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
    elif resource is JOBS:
        _job_defaults(obj)
    elif resource is SECRETS:
        obj.setdefault("type", "Opaque")
    elif resource is SERVICES:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        digest = hashlib.sha256(obj["metadata"]["uid"].encode()).digest()
        spec.setdefault("clusterIP", f"10.0.{digest[0]}.{digest[1] % 250 + 2}")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})


def _job_defaults(job: dict[str, Any]) -> None:
    meta, spec = job["metadata"], job["spec"]
    uid, name = meta["uid"], meta["name"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
    for key, value in (
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ):
        labels.setdefault(key, value)
    spec["template"]["spec"].setdefault("restartPolicy", "Never")


def _pod_defaults(pod: dict[str, Any], nodes: dict[str, str]) -> None:
    spec = pod["spec"]
    for container in spec["containers"]:
        image = str(container["image"])
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        container.setdefault("imagePullPolicy", "IfNotPresent" if tagged else "Always")
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("nodeName", NODE_NAME)
    host_ip = nodes.get(spec["nodeName"], "10.224.0.4")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    if "status" in pod and pod["status"].get("phase"):
        return
    started = pod["metadata"]["creationTimestamp"]
    digest = hashlib.sha256(pod["metadata"]["uid"].encode()).hexdigest()
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": f"10.244.0.{int(digest[:4], 16) % 250 + 2}",
        "podIPs": [{"ip": f"10.244.0.{int(digest[:4], 16) % 250 + 2}"}],
        "startTime": started,
        "containerStatuses": [
            {
                "name": c["name"],
                "state": {"running": {"startedAt": started}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": c["image"],
                "imageID": f"{str(c['image']).split(':')[0]}@sha256:"
                f"{hashlib.sha256(str(c['image']).encode()).hexdigest()}",
                "containerID": f"containerd://{digest}",
                "started": True,
            }
            for c in spec["containers"]
        ],
        "qosClass": "BestEffort",
    }


__all__ = [
    "APPLY_PATCH",
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "EVENTS",
    "GROUPS",
    "JOBS",
    "JSON_PATCH",
    "KINDS",
    "MERGE_PATCH",
    "MERGE_PATCHES",
    "NAMESPACES",
    "NODES",
    "PDBS",
    "PODS",
    "REPLICASETS",
    "RESOURCES",
    "ROLES",
    "ROLE_BINDINGS",
    "SECRETS",
    "SERVICES",
    "SERVICE_ACCOUNTS",
    "STRATEGIC_PATCH",
    "VERBS",
    "KubeError",
    "ObjectStore",
    "Resource",
    "bad_request",
    "json_patch",
    "labels_match",
    "merge_patch",
    "no_such_path",
    "now",
    "parse_label_selector",
    "parse_stamp",
    "strategic_merge",
]

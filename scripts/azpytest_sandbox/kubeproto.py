"""Read the Kubernetes protobuf encoding of the few objects the sandbox's API server stores.

kubectl v1.32 sends built-in objects it creates itself (`kubectl create namespace`,
`kubectl create configmap`, `kubectl run`, `kubectl create serviceaccount|secret|service|
deployment|job|role|rolebinding|clusterrole|clusterrolebinding`) as
`application/vnd.kubernetes.protobuf`, not JSON; a server that refuses that media type
fails those commands. This turns such a body into the object's JSON form. Only the fields
below are read (others are skipped, as a protobuf reader skips unknown fields); field
numbers are those of k8s.io/api's `generated.proto`.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeAlias

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
# Every protobuf-encoded Kubernetes object starts with these bytes, then a runtime.Unknown.
MAGIC = b"k8s\x00"


class ProtoError(ValueError):
    """A body that is not a Kubernetes protobuf object this reader knows."""


Message: TypeAlias = dict[int, "Field"]


@dataclass(frozen=True)
class Map:
    """A `map<string, V>` field (on the wire: repeated entries of key = 1, value = 2)."""

    value: Kind


# A scalar ("string", "bytes", "int", "bool", "time", "quantity"), a message, or a map.
Kind: TypeAlias = str | Message | Map


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    repeated: bool = False
    # Go pointer fields are sent only when set, so a zero there is meant; other zeros are
    # Go's defaults, which its JSON leaves out (omitempty).
    keep_zero: bool = False


def _p(name: str, kind: str) -> Field:
    return Field(name, kind, keep_zero=True)


def _s(name: str) -> Field:
    return Field(name, "string")


TIME: Message = {1: Field("seconds", "int"), 2: Field("nanos", "int")}
OWNER_REFERENCE: Message = {
    5: _s("apiVersion"), 1: _s("kind"), 3: _s("name"), 4: _s("uid"),
    6: _p("controller", "bool"), 7: _p("blockOwnerDeletion", "bool"),
}  # fmt: skip
OBJECT_META: Message = {
    1: _s("name"), 2: _s("generateName"), 3: _s("namespace"), 5: _s("uid"),
    6: _s("resourceVersion"), 7: Field("generation", "int"),
    8: Field("creationTimestamp", "time"),
    11: Field("labels", Map("string")), 12: Field("annotations", Map("string")),
    13: Field("ownerReferences", OWNER_REFERENCE, repeated=True),
    14: Field("finalizers", "string", repeated=True),
}  # fmt: skip
RESOURCE_REQUIREMENTS: Message = {
    1: Field("limits", Map("quantity")), 2: Field("requests", Map("quantity")),
}  # fmt: skip
CONTAINER: Message = {
    1: _s("name"), 2: _s("image"),
    3: Field("command", "string", repeated=True), 4: Field("args", "string", repeated=True),
    5: _s("workingDir"),
    6: Field("ports", {1: _s("name"), 2: Field("hostPort", "int"),
                       3: _p("containerPort", "int"), 4: _s("protocol"), 5: _s("hostIP")},
             repeated=True),
    7: Field("env", {1: _s("name"), 2: _s("value")}, repeated=True),
    8: Field("resources", RESOURCE_REQUIREMENTS),
    13: _s("terminationMessagePath"), 20: _s("terminationMessagePolicy"),
    14: _s("imagePullPolicy"),
    16: Field("stdin", "bool"), 17: Field("stdinOnce", "bool"), 18: Field("tty", "bool"),
}  # fmt: skip
POD_SPEC: Message = {
    2: Field("containers", CONTAINER, repeated=True),
    20: Field("initContainers", CONTAINER, repeated=True),
    3: _s("restartPolicy"), 4: _p("terminationGracePeriodSeconds", "int"),
    5: _p("activeDeadlineSeconds", "int"), 6: _s("dnsPolicy"),
    7: Field("nodeSelector", Map("string")), 8: _s("serviceAccountName"),
    9: _s("serviceAccount"), 10: _s("nodeName"), 11: Field("hostNetwork", "bool"),
    16: _s("hostname"), 17: _s("subdomain"), 19: _s("schedulerName"),
    21: _p("automountServiceAccountToken", "bool"), 24: _s("priorityClassName"),
    25: _p("priority", "int"), 30: _p("enableServiceLinks", "bool"),
    31: _s("preemptionPolicy"),
}  # fmt: skip
POLICY_RULE: Message = {
    1: Field("verbs", "string", repeated=True), 2: Field("apiGroups", "string", repeated=True),
    3: Field("resources", "string", repeated=True),
    4: Field("resourceNames", "string", repeated=True),
    5: Field("nonResourceURLs", "string", repeated=True),
}  # fmt: skip
SUBJECT: Message = {1: _s("kind"), 2: _s("apiGroup"), 3: _s("name"), 4: _s("namespace")}
ROLE_REF: Message = {1: _s("apiGroup"), 2: _s("kind"), 3: _s("name")}
LABEL_SELECTOR: Message = {
    1: Field("matchLabels", Map("string")),
    2: Field("matchExpressions", {1: _s("key"), 2: _s("operator"),
                                  3: Field("values", "string", repeated=True)}, repeated=True),
}  # fmt: skip
POD_TEMPLATE: Message = {1: Field("metadata", OBJECT_META), 2: Field("spec", POD_SPEC)}
SERVICE_SPEC: Message = {
    1: Field("ports", {1: _s("name"), 2: _s("protocol"), 3: _p("port", "int"),
                       4: Field("targetPort", "intorstring"), 5: Field("nodePort", "int")},
             repeated=True),
    2: Field("selector", Map("string")), 3: _s("clusterIP"), 4: _s("type"),
}  # fmt: skip
DEPLOYMENT_SPEC: Message = {
    1: _p("replicas", "int"), 2: Field("selector", LABEL_SELECTOR),
    3: Field("template", POD_TEMPLATE), 5: Field("minReadySeconds", "int"),
    6: _p("revisionHistoryLimit", "int"), 7: Field("paused", "bool"),
    9: _p("progressDeadlineSeconds", "int"),
}  # fmt: skip
JOB_SPEC: Message = {
    1: _p("parallelism", "int"), 2: _p("completions", "int"),
    3: _p("activeDeadlineSeconds", "int"), 4: Field("selector", LABEL_SELECTOR),
    5: _p("manualSelector", "bool"), 6: Field("template", POD_TEMPLATE),
    7: _p("backoffLimit", "int"), 8: _p("ttlSecondsAfterFinished", "int"),
    9: _s("completionMode"), 10: _p("suspend", "bool"),
}  # fmt: skip
RESOURCE_ATTRIBUTES: Message = {
    1: _s("namespace"), 2: _s("verb"), 3: _s("group"), 4: _s("version"), 5: _s("resource"),
    6: _s("subresource"), 7: _s("name"),
}  # fmt: skip
REVIEW_SPEC: Message = {
    1: Field("resourceAttributes", RESOURCE_ATTRIBUTES),
    2: Field("nonResourceAttributes", {1: _s("path"), 2: _s("verb")}),
}
KINDS: dict[str, Message] = {
    "Namespace": {
        1: Field("metadata", OBJECT_META),
        2: Field("spec", {1: Field("finalizers", "string", repeated=True)}),
        3: Field("status", {1: _s("phase")}),
    },
    "ConfigMap": {
        1: Field("metadata", OBJECT_META),
        2: Field("data", Map("string")),
        3: Field("binaryData", Map("bytes")),
        4: _p("immutable", "bool"),
    },
    "Pod": {
        1: Field("metadata", OBJECT_META),
        2: Field("spec", POD_SPEC),
        3: Field("status", {1: _s("phase")}),
    },
    "ServiceAccount": {
        1: Field("metadata", OBJECT_META),
        2: Field("secrets", {1: _s("kind"), 2: _s("namespace"), 3: _s("name")}, repeated=True),
        3: Field("imagePullSecrets", {1: _s("name")}, repeated=True),
        4: _p("automountServiceAccountToken", "bool"),
    },
    "Secret": {
        1: Field("metadata", OBJECT_META),
        2: Field("data", Map("bytes")),
        3: _s("type"),
        4: Field("stringData", Map("string")),
        5: _p("immutable", "bool"),
    },
    "Role": {1: Field("metadata", OBJECT_META), 2: Field("rules", POLICY_RULE, repeated=True)},
    "ClusterRole": {
        1: Field("metadata", OBJECT_META),
        2: Field("rules", POLICY_RULE, repeated=True),
    },
    "RoleBinding": {
        1: Field("metadata", OBJECT_META),
        2: Field("subjects", SUBJECT, repeated=True),
        3: Field("roleRef", ROLE_REF),
    },
    "ClusterRoleBinding": {
        1: Field("metadata", OBJECT_META),
        2: Field("subjects", SUBJECT, repeated=True),
        3: Field("roleRef", ROLE_REF),
    },
    "Service": {1: Field("metadata", OBJECT_META), 2: Field("spec", SERVICE_SPEC)},
    "Deployment": {1: Field("metadata", OBJECT_META), 2: Field("spec", DEPLOYMENT_SPEC)},
    "Job": {1: Field("metadata", OBJECT_META), 2: Field("spec", JOB_SPEC)},
    "SelfSubjectAccessReview": {1: Field("metadata", OBJECT_META), 2: Field("spec", REVIEW_SPEC)},
    "DeleteOptions": {
        1: _p("gracePeriodSeconds", "int"),
        3: _p("orphanDependents", "bool"),
        4: _s("propagationPolicy"),
        5: Field("dryRun", "string", repeated=True),
    },
}
_UNKNOWN: Message = {
    1: Field("typeMeta", {1: _s("apiVersion"), 2: _s("kind")}),
    2: Field("raw", "bytes"),
    3: _s("contentEncoding"),
    4: _s("contentType"),
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of one of the KINDS."""
    if not body.startswith(MAGIC):
        raise ProtoError("the body does not start with the Kubernetes protobuf prefix")
    envelope = _fields(body[len(MAGIC) :], _UNKNOWN, raw=True)
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtoError(f"the sandbox cannot read a protobuf-encoded {kind or 'object'}")
    raw = envelope.get("raw", b"")
    obj = _fields(raw if isinstance(raw, bytes) else b"", schema)
    return {"kind": kind, "apiVersion": type_meta.get("apiVersion", "v1"), **obj}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _fields(data: bytes, schema: Message, raw: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtoError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        field = schema.get(number)
        if field is None:
            continue
        if isinstance(field.kind, Map):
            if not isinstance(value, bytes):
                raise ProtoError(f"{field.name}: a map entry must be length-delimited")
            entry = _fields(value, {1: _s("key"), 2: Field("value", field.kind.value)})
            out.setdefault(field.name, {})[entry.get("key", "")] = entry.get("value", "")
            continue
        converted = _convert(field, value, raw)
        if field.repeated:
            out.setdefault(field.name, []).append(converted)
        elif converted is not None:
            out[field.name] = converted
    return out


def _convert(field: Field, value: int | bytes, raw: bool) -> Any:
    kind = field.kind
    if kind in ("int", "bool"):
        if not isinstance(value, int):
            raise ProtoError(f"{field.name}: expected a varint")
        if not value and not field.keep_zero and not field.repeated:
            return None
        if kind == "bool":
            return value != 0
        return value - (1 << 64) if value >= 1 << 63 else value
    if not isinstance(value, bytes):
        raise ProtoError(f"{field.name}: expected a length-delimited value")
    if kind == "string":
        text = value.decode("utf-8")
        # Go's JSON leaves out empty optional strings (omitempty); so does the object here.
        return text if text or field.repeated else None
    if kind == "bytes":
        return value if raw else base64.b64encode(value).decode()
    if kind == "intorstring":
        number = _fields(value, {1: _p("type", "int"), 2: _p("intVal", "int"), 3: _s("strVal")})
        return number.get("strVal", "") if number.get("type") == 1 else number.get("intVal", 0)
    if kind == "quantity":
        return _fields(value, {1: _s("string")}).get("string", "0")
    if kind == "time":
        stamp = _fields(value, TIME)
        if not stamp.get("seconds"):
            return None
        when = dt.datetime.fromtimestamp(stamp["seconds"], dt.timezone.utc)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(kind, dict):
        return _fields(value, kind)
    raise ProtoError(f"{field.name}: unknown field kind {kind!r}")


__all__ = ["MAGIC", "MEDIA_TYPE", "ProtoError", "decode"]

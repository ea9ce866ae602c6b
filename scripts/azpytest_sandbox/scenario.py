"""The sandbox's world as data: tenants, apps, vaults, subscriptions, clusters and faults.

A scenario is read from YAML or JSON (``--scenario FILE``) or built in Python; whatever is
left out comes from :func:`default_scenario_data`. Validation names the file and the field,
so ``azpytest sandbox --scenario broken.yaml`` can say exactly what to fix.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import fnmatch
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"
# The well-known client id that `az aks get-credentials` writes into kubelogin's args.
AZURE_CLI_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"

SERVICES = ("github", "entra", "keyvault", "arm", "kube", "ldap", "sql")
SQL_CLOUDS = ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud")


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the field and the problem."""


def default_scenario_data() -> dict[str, Any]:
    """The world `azpytest sandbox` serves when no scenario is given.

    The app ``azpytest-ci`` trusts the sandbox's default GitHub token (push to main of
    octo-org/octo-repo), may read every secret of ``kv-azpytest`` and is a cluster user of
    ``aks-azpytest``.
    """
    return {
        "github": {
            "repository": "octo-org/octo-repo",
            "repository_id": "690123456",
            "repository_owner_id": "9919",
            "ref": "refs/heads/main",
            "event_name": "push",
            "workflow_file": "ci.yml",
            "run_id": "12345678901",
            "run_number": "42",
            "run_attempt": "1",
            "actor": "octocat",
            "sha": "a" * 40,
        },
        "tenants": [
            {
                "id": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
                "name": "contoso",
                "apps": [
                    {
                        "name": "azpytest-ci",
                        "client_id": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
                        "object_id": "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e",
                        "federated_credentials": [
                            {
                                "name": "main",
                                "subject": "repo:octo-org/octo-repo:ref:refs/heads/main",
                            }
                        ],
                        "secrets": [],
                    }
                ],
            }
        ],
        "vaults": [
            {
                "name": "kv-azpytest",
                "grants": [{"principal": "azpytest-ci"}],
                "secrets": {
                    "pg-host": "127.0.0.1",
                    "pg-database": "postgres",
                    "pg-user": "app",
                    "pg-password": "s3cr3t-Pa55word!",
                },
            }
        ],
        "subscriptions": [
            {
                "id": "c0ffee00-1234-4abc-8def-0123456789ab",
                "name": "azpytest-sandbox",
                "resource_groups": [
                    {
                        "name": "rg-azpytest",
                        "location": "eastus",
                        "clusters": [{"name": "aks-azpytest"}],
                    }
                ],
                "grants": [
                    {
                        "principal": "azpytest-ci",
                        "role": "Azure Kubernetes Service Cluster User Role",
                    },
                    {"principal": "azpytest-ci", "role": "Reader"},
                ],
            }
        ],
        # Azure SQL logical servers: none unless a scenario asks (each adds sql-host, sql-port
        # and sql-database to its vault, which would change every other test's vault listing).
        "sql_servers": [],
    }


@dataclass
class FederatedCredential:
    name: str
    issuer: str
    subject: str
    audiences: list[str]


@dataclass
class App:
    name: str
    client_id: str
    object_id: str
    tenant_id: str
    federated_credentials: list[FederatedCredential]
    secrets: list[str]
    roles: list[str]


@dataclass
class Tenant:
    id: str
    name: str
    apps: list[App]


@dataclass
class SecretVersion:
    version: str
    value: str
    enabled: bool
    expires: dt.datetime | None
    not_before: dt.datetime | None
    content_type: str | None
    tags: dict[str, str]
    created: dt.datetime


@dataclass
class Secret:
    name: str
    versions: list[SecretVersion]  # oldest first; the last is the current one

    @property
    def current(self) -> SecretVersion:
        return self.versions[-1]


@dataclass
class Grant:
    """`principal` (an app's name, client id or object id) may read `scope` ("*" = vault)."""

    principal: str
    scope: str = "*"


@dataclass
class Vault:
    name: str
    tenant_id: str
    location: str
    secrets: dict[str, Secret]
    grants: list[Grant]


class KubeAccess(enum.Enum):
    """What a principal may do inside a cluster (Azure RBAC for Kubernetes, simplified)."""

    NONE = "none"
    USER = "user"  # read everything, write namespaced objects and namespaces
    ADMIN = "admin"  # also write cluster-scoped objects: nodes, cluster roles, their bindings


# Roles over a cluster (or a scope above it) that open its API server to a principal: the
# roles that let it fetch the cluster user's kubeconfig, and the AKS RBAC data-plane roles.
KUBE_USER_ROLES = frozenset(
    {
        "azure kubernetes service cluster user role",
        "azure kubernetes service cluster admin role",
        "azure kubernetes service rbac reader",
        "azure kubernetes service rbac writer",
        "azure kubernetes service rbac admin",
        "contributor",
        "owner",
    }
)
KUBE_ADMIN_ROLES = frozenset({"azure kubernetes service rbac cluster admin"})


@dataclass
class Cluster:
    name: str
    entra: bool
    kubernetes_version: str
    location: str
    node_count: int = 2
    # Lower-case principal (app name, client id or object id) -> lower-case roles it holds
    # over this cluster; filled from the subscription's grants.
    roles: dict[str, set[str]] = field(default_factory=dict)

    def access_of(self, *principal: str) -> KubeAccess:
        held: set[str] = set()
        for name in principal:
            held |= self.roles.get(name.lower(), set())
        if held & KUBE_ADMIN_ROLES:
            return KubeAccess.ADMIN
        if held & KUBE_USER_ROLES:
            return KubeAccess.USER
        return KubeAccess.NONE


@dataclass
class ResourceGroup:
    name: str
    location: str
    clusters: dict[str, Cluster]


@dataclass
class RoleGrant:
    principal: str
    role: str
    scope: str  # an ARM id prefix, lower case; "" = the whole subscription


@dataclass
class Subscription:
    id: str
    name: str
    tenant_id: str
    resource_groups: dict[str, ResourceGroup]  # keyed by lower-case name
    grants: list[RoleGrant]


@dataclass
class SqlDatabase:
    name: str
    users: list[
        str
    ]  # apps' names, client ids or object ids (CREATE USER ... FROM EXTERNAL PROVIDER)
    available: bool  # false: logins get 40613


@dataclass
class SqlServer:
    """An Azure SQL logical server: its databases, firewall and the vault it is published in."""

    name: str
    tenant_id: str
    cloud: str  # the token audience it takes: AzureCloud, AzureUSGovernment, AzureChinaCloud
    databases: dict[str, SqlDatabase]  # keyed by lower-case name
    firewall: list[tuple[str, str]]  # (start, end) IP addresses allowed
    vault: str | None  # the vault that gets sql-host, sql-port, sql-database; None: none


@dataclass
class Fault:
    """A rule applied to matching requests before the service answers.

    `status` answers that status `times` times (0 = always) with `retry_after` seconds;
    `hang_s` holds the request that long and closes the connection without an answer;
    `reset` drops the connection (TCP reset) without an answer; `malformed` answers 200
    with a body that is not JSON (an HTML error page); `truncated` answers 200 with JSON
    cut short; `latency_ms` delays the answer. `for_s` limits the rule to that many
    seconds from the first request it answers (an outage that passes), with `times` or
    instead of it.
    """

    service: str = "*"
    method: str = "*"
    path: str = "*"
    host: str = "*"
    status: int | None = None
    times: int = 0
    retry_after: float | None = None
    hang_s: float = 0.0
    malformed: bool = False
    truncated: bool = False
    reset: bool = False
    latency_ms: int = 0
    for_s: float | None = None
    hits: int = 0
    first_hit: float | None = None  # time.monotonic() of the first request it answered

    @property
    def answers(self) -> bool:
        return bool(
            self.status is not None or self.hang_s or self.malformed or self.truncated or self.reset
        )

    def in_force(self, now: float) -> bool:
        """Whether the rule still answers: `times` not used up, `for_s` not over."""
        if self.times and self.hits >= self.times:
            return False
        return self.for_s is None or self.first_hit is None or now - self.first_hit < self.for_s

    def matches(self, service: str, method: str, host: str, path: str) -> bool:
        return (
            self.service in ("*", service)
            and self.method in ("*", method)
            and fnmatch.fnmatchcase(host, self.host)
            and fnmatch.fnmatchcase(path, self.path)
        )


@dataclass
class GitHubContext:
    repository: str
    repository_id: str
    repository_owner_id: str
    ref: str
    event_name: str
    environment: str | None
    workflow_file: str
    job_workflow_ref: str | None
    run_id: str
    run_number: str
    run_attempt: str
    actor: str
    sha: str
    immutable_subject: bool
    token_lifetime_s: int
    clock_skew_s: int = 0  # GitHub's clock against Entra's: -600 issues tokens already expired

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def workflow_ref(self) -> str:
        return f"{self.repository}/.github/workflows/{self.workflow_file}@{self.ref}"

    @property
    def subject(self) -> str:
        if self.immutable_subject:
            name = self.repository.split("/", 1)[1]
            prefix = f"repo:{self.owner}@{self.repository_owner_id}/{name}@{self.repository_id}"
        else:
            prefix = f"repo:{self.repository}"
        if self.environment:
            return f"{prefix}:environment:{self.environment}"
        if self.event_name in ("pull_request", "pull_request_target"):
            return f"{prefix}:pull_request"
        return f"{prefix}:ref:{self.ref}"


@dataclass
class Scenario:
    github: GitHubContext
    tenants: list[Tenant]
    vaults: dict[str, Vault]  # keyed by lower-case name
    subscriptions: list[Subscription]
    faults: list[Fault] = field(default_factory=list)
    token_lifetime_s: int = 3600
    sql_servers: list[SqlServer] = field(default_factory=list)

    def apps(self) -> list[App]:
        return [app for tenant in self.tenants for app in tenant.apps]

    def tenant(self, tenant_id: str) -> Tenant | None:
        wanted = tenant_id.lower()
        for tenant in self.tenants:
            if wanted in (tenant.id.lower(), tenant.name.lower(), f"{tenant.name}.onmicrosoft.com"):
                return tenant
        return None

    def app_by_principal(self, principal: str) -> App | None:
        wanted = principal.lower()
        for app in self.apps():
            if wanted in (app.name.lower(), app.client_id.lower(), app.object_id.lower()):
                return app
        return None

    @property
    def default_app(self) -> App | None:
        apps = self.apps()
        return apps[0] if apps else None


# ---------------------------------------------------------------------------- loading


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file (YAML or JSON); ScenarioError names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML or JSON"
        raise ScenarioError(f"{path}: {problem}{where}") from None
    if data is None:
        data = {}
    try:
        return build_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def build_scenario(data: Any) -> Scenario:
    """Build a scenario from a mapping; keys that are absent take the default world's."""
    if not isinstance(data, dict):
        raise ScenarioError(f"the scenario must be a mapping, not {_kind(data)}")
    known = {
        "github",
        "tenants",
        "vaults",
        "subscriptions",
        "faults",
        "token_lifetime_s",
        "sql_servers",
    }
    _no_unknown(data, known, "the scenario")
    merged = default_scenario_data()
    merged.update(copy.deepcopy(data))
    tenants = [_tenant(t, f"tenants[{i}]") for i, t in enumerate(_list(merged, "tenants", ""))]
    if not tenants:
        raise ScenarioError("tenants: at least one tenant is needed")
    first_tenant = tenants[0].id
    tenant_ids = {t.id.lower() for t in tenants}

    def tenant_of(obj: dict[str, Any], where: str) -> str:
        tid = str(obj.get("tenant", first_tenant))
        if tid.lower() not in tenant_ids:
            raise ScenarioError(f"{where}.tenant: no tenant {tid!r} in tenants")
        return tid

    vaults: dict[str, Vault] = {}
    for i, v in enumerate(_list(merged, "vaults", "")):
        vault = _vault(v, f"vaults[{i}]", tenant_of)
        vaults[vault.name.lower()] = vault
    subs = [
        _subscription(s, f"subscriptions[{i}]", tenant_of)
        for i, s in enumerate(_list(merged, "subscriptions", ""))
    ]
    faults = [_fault(f, f"faults[{i}]") for i, f in enumerate(_list(merged, "faults", ""))]
    first_vault = next(iter(vaults.values())).name if vaults else None
    sql_servers = [
        _sql_server(s, f"sql_servers[{i}]", tenant_of, vaults, first_vault)
        for i, s in enumerate(_list(merged, "sql_servers", ""))
    ]
    return Scenario(
        github=_github(merged.get("github") or {}),
        tenants=tenants,
        vaults=vaults,
        subscriptions=subs,
        faults=faults,
        token_lifetime_s=_int(merged, "token_lifetime_s", "", 3600, minimum=1),
        sql_servers=sql_servers,
    )


def parse_fault(data: Any, where: str = "fault") -> Fault:
    return _fault(data, where)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScenarioError(f"{where}{key}: expected a list, got {_kind(value)}")
    return value


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {_kind(value)}")
    return value


def _str(obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None:
        raise ScenarioError(f"{where}.{key}: required")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ScenarioError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return str(value)


def _int(obj: dict[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(
            f"{where}{'.' if where else ''}{key}: expected a whole number ≥ {minimum}"
        )
    return int(value)


def _signed_int(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}.{key}: expected a whole number of seconds, got {value!r}")
    return int(value)


def _bool(obj: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _uuid(obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = _str(obj, key, where, default)
    try:
        uuid.UUID(value)
    except ValueError:
        raise ScenarioError(f"{where}.{key}: {value!r} is not a GUID") from None
    return value.lower()


def _time(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(f"{where}: {value!r} is not an ISO 8601 time") from None
    else:
        raise ScenarioError(f"{where}: expected an ISO 8601 time, got {_kind(value)}")
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def _github(data: Any) -> GitHubContext:
    where = "github"
    obj = _map(data, where)
    defaults = default_scenario_data()["github"]
    known = {
        *defaults,
        "environment",
        "job_workflow_ref",
        "immutable_subject",
        "token_lifetime_s",
        "clock_skew_s",
    }
    _no_unknown(obj, known, where)
    merged = {**defaults, **obj}
    repository = _str(merged, "repository", where)
    if repository.count("/") != 1:
        raise ScenarioError(f"{where}.repository: {repository!r} is not OWNER/NAME")
    ref = _str(merged, "ref", where)
    if not ref.startswith("refs/"):
        raise ScenarioError(f"{where}.ref: {ref!r} must start with refs/ (refs/heads/main)")
    environment = merged.get("environment")
    return GitHubContext(
        repository=repository,
        repository_id=_str(merged, "repository_id", where),
        repository_owner_id=_str(merged, "repository_owner_id", where),
        ref=ref,
        event_name=_str(merged, "event_name", where),
        environment=None if environment is None else _str(merged, "environment", where),
        workflow_file=_str(merged, "workflow_file", where),
        job_workflow_ref=(
            None
            if merged.get("job_workflow_ref") is None
            else _str(merged, "job_workflow_ref", where)
        ),
        run_id=_str(merged, "run_id", where),
        run_number=_str(merged, "run_number", where),
        run_attempt=_str(merged, "run_attempt", where),
        actor=_str(merged, "actor", where),
        sha=_str(merged, "sha", where),
        immutable_subject=_bool(merged, "immutable_subject", where, False),
        token_lifetime_s=_int(merged, "token_lifetime_s", where, 300, minimum=1),
        clock_skew_s=_signed_int(merged, "clock_skew_s", where),
    )


def _tenant(data: Any, where: str) -> Tenant:
    obj = _map(data, where)
    _no_unknown(obj, {"id", "name", "apps"}, where)
    tid = _uuid(obj, "id", where)
    apps = [
        _app(a, f"{where}.apps[{i}]", tid) for i, a in enumerate(_list(obj, "apps", where + "."))
    ]
    return Tenant(id=tid, name=_str(obj, "name", where, tid), apps=apps)


def _app(data: Any, where: str, tenant_id: str) -> App:
    obj = _map(data, where)
    _no_unknown(
        obj, {"name", "client_id", "object_id", "federated_credentials", "secrets", "roles"}, where
    )
    creds = []
    for i, c in enumerate(_list(obj, "federated_credentials", where + ".")):
        cw = f"{where}.federated_credentials[{i}]"
        cobj = _map(c, cw)
        _no_unknown(cobj, {"name", "issuer", "subject", "audience", "audiences"}, cw)
        audiences = cobj.get("audiences", [cobj.get("audience", DEFAULT_AUDIENCE)])
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise ScenarioError(f"{cw}.audiences: expected a list of strings")
        creds.append(
            FederatedCredential(
                name=_str(cobj, "name", cw, f"credential-{i}"),
                issuer=_str(cobj, "issuer", cw, GITHUB_ISSUER),
                subject=_str(cobj, "subject", cw),
                audiences=audiences,
            )
        )
    secrets = _list(obj, "secrets", where + ".")
    roles = _list(obj, "roles", where + ".")
    return App(
        name=_str(obj, "name", where),
        client_id=_uuid(obj, "client_id", where, str(uuid.uuid4())),
        object_id=_uuid(obj, "object_id", where, str(uuid.uuid4())),
        tenant_id=tenant_id,
        federated_credentials=creds,
        secrets=[str(s) for s in secrets],
        roles=[str(r) for r in roles],
    )


_VERSION_KEYS = {"value", "enabled", "expires", "not_before", "content_type", "tags", "version"}


def _secret(name: str, data: Any, where: str, index: int) -> Secret:
    if isinstance(data, str | int | float) and not isinstance(data, bool):
        data = {"value": str(data)}
    obj = _map(data, where)
    _no_unknown(obj, _VERSION_KEYS | {"versions"}, where)
    raw_versions = list(_list(obj, "versions", where + "."))
    current = {k: v for k, v in obj.items() if k != "versions"}
    if "value" in current:
        raw_versions.append(current)
    if not raw_versions:
        raise ScenarioError(f"{where}: a secret needs a value or versions")
    created = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    versions = []
    for n, v in enumerate(raw_versions):
        vw = (
            f"{where}.versions[{n}]"
            if n < len(raw_versions) - 1 or "value" not in current
            else where
        )
        vobj = _map(v, vw)
        _no_unknown(vobj, _VERSION_KEYS, vw)
        tags = vobj.get("tags") or {}
        if not isinstance(tags, dict):
            raise ScenarioError(f"{vw}.tags: expected a mapping")
        content_type = vobj.get("content_type")
        versions.append(
            SecretVersion(
                # Deterministic 32-hex versions, as Key Vault's look.
                version=str(
                    vobj.get("version") or uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{n}").hex
                ),
                value=_str(vobj, "value", vw),
                enabled=_bool(vobj, "enabled", vw, True),
                expires=_time(vobj.get("expires"), f"{vw}.expires"),
                not_before=_time(vobj.get("not_before"), f"{vw}.not_before"),
                content_type=None if content_type is None else str(content_type),
                tags={str(k): str(val) for k, val in tags.items()},
                created=created + dt.timedelta(days=index, minutes=n),
            )
        )
    return Secret(name=name, versions=versions)


def publish_secret(vault: Vault, name: str, value: str) -> None:
    """Add `name` to `vault` with `value` unless the scenario already has it (the sandbox
    publishes addresses it only knows once started, such as the Azure SQL stand-in's port)."""
    if name.lower() not in vault.secrets:
        vault.secrets[name.lower()] = _secret(
            name, value, f"{vault.name}.{name}", len(vault.secrets)
        )


_SECRET_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _vault(data: Any, where: str, tenant_of: Any) -> Vault:
    obj = _map(data, where)
    _no_unknown(obj, {"name", "tenant", "location", "secrets", "grants"}, where)
    name = _str(obj, "name", where)
    if not (3 <= len(name) <= 24) or not set(name) <= _SECRET_NAME_CHARS:
        raise ScenarioError(f"{where}.name: {name!r} is not a vault name (3-24 letters, digits, -)")
    raw = obj.get("secrets") or {}
    secrets: dict[str, Secret] = {}
    for i, (sname, sdata) in enumerate(_map(raw, f"{where}.secrets").items()):
        sname = str(sname)
        if not (1 <= len(sname) <= 127) or not set(sname) <= _SECRET_NAME_CHARS:
            raise ScenarioError(f"{where}.secrets: {sname!r} is not a Key Vault secret name")
        secrets[sname.lower()] = _secret(sname, sdata, f"{where}.secrets.{sname}", i)
    grants = []
    for i, g in enumerate(_list(obj, "grants", where + ".")):
        gw = f"{where}.grants[{i}]"
        gobj = _map(g, gw)
        _no_unknown(gobj, {"principal", "scope"}, gw)
        grants.append(
            Grant(principal=_str(gobj, "principal", gw), scope=_str(gobj, "scope", gw, "*"))
        )
    return Vault(
        name=name,
        tenant_id=tenant_of(obj, where),
        location=_str(obj, "location", where, "eastus"),
        secrets=secrets,
        grants=grants,
    )


def _subscription(data: Any, where: str, tenant_of: Any) -> Subscription:
    obj = _map(data, where)
    _no_unknown(obj, {"id", "name", "tenant", "resource_groups", "grants"}, where)
    sid = _uuid(obj, "id", where)
    groups: dict[str, ResourceGroup] = {}
    for i, g in enumerate(_list(obj, "resource_groups", where + ".")):
        gw = f"{where}.resource_groups[{i}]"
        gobj = _map(g, gw)
        _no_unknown(gobj, {"name", "location", "clusters"}, gw)
        location = _str(gobj, "location", gw, "eastus")
        clusters: dict[str, Cluster] = {}
        for j, c in enumerate(_list(gobj, "clusters", gw + ".")):
            cw = f"{gw}.clusters[{j}]"
            cobj = _map(c, cw)
            _no_unknown(cobj, {"name", "entra", "kubernetes_version", "location", "node_count"}, cw)
            nodes = cobj.get("node_count", 2)
            if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 100:
                raise ScenarioError(f"{cw}.node_count: expected a whole number from 1 to 100")
            cluster = Cluster(
                name=_str(cobj, "name", cw),
                entra=_bool(cobj, "entra", cw, True),
                kubernetes_version=_str(cobj, "kubernetes_version", cw, "1.32.4"),
                location=_str(cobj, "location", cw, location),
                node_count=nodes,
            )
            clusters[cluster.name.lower()] = cluster
        group = ResourceGroup(name=_str(gobj, "name", gw), location=location, clusters=clusters)
        groups[group.name.lower()] = group
    grants = []
    for i, g in enumerate(_list(obj, "grants", where + ".")):
        gw = f"{where}.grants[{i}]"
        gobj = _map(g, gw)
        _no_unknown(gobj, {"principal", "role", "scope"}, gw)
        scope = _str(gobj, "scope", gw, f"/subscriptions/{sid}")
        grants.append(
            RoleGrant(
                principal=_str(gobj, "principal", gw),
                role=_str(gobj, "role", gw),
                scope=scope.rstrip("/").lower(),
            )
        )
    for group in groups.values():
        for cluster in group.clusters.values():
            scope = (
                f"/subscriptions/{sid}/resourcegroups/{group.name}/providers/"
                f"microsoft.containerservice/managedclusters/{cluster.name}"
            ).lower()
            for grant in grants:
                if scope == grant.scope or scope.startswith(grant.scope + "/"):
                    cluster.roles.setdefault(grant.principal.lower(), set()).add(grant.role.lower())
    return Subscription(
        id=sid,
        name=_str(obj, "name", where, sid),
        tenant_id=tenant_of(obj, where),
        resource_groups=groups,
        grants=grants,
    )


def _sql_server(
    data: Any, where: str, tenant_of: Any, vaults: dict[str, Vault], first_vault: str | None
) -> SqlServer:
    obj = _map(data, where)
    _no_unknown(obj, {"name", "tenant", "cloud", "databases", "firewall", "vault"}, where)
    name = _str(obj, "name", where)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,61}[a-z0-9]", name):
        raise ScenarioError(f"{where}.name: {name!r} is not a server name (lower case, digits, -)")
    cloud = _str(obj, "cloud", where, "AzureCloud")
    if cloud not in SQL_CLOUDS:
        raise ScenarioError(f"{where}.cloud: {cloud!r} is not one of {', '.join(SQL_CLOUDS)}")
    databases: dict[str, SqlDatabase] = {}
    for i, d in enumerate(_list(obj, "databases", where + ".")):
        dw = f"{where}.databases[{i}]"
        dobj = _map(d, dw)
        _no_unknown(dobj, {"name", "users", "available"}, dw)
        users = _list(dobj, "users", dw + ".")
        db = SqlDatabase(
            name=_str(dobj, "name", dw),
            users=[str(u) for u in users],
            available=_bool(dobj, "available", dw, True),
        )
        databases[db.name.lower()] = db
    firewall: list[tuple[str, str]] = []
    raw_rules = obj.get("firewall")
    rules = [{"start": "0.0.0.0", "end": "255.255.255.255"}] if raw_rules is None else raw_rules
    if not isinstance(rules, list):
        raise ScenarioError(f"{where}.firewall: expected a list, got {_kind(rules)}")
    for i, r in enumerate(rules):
        rw = f"{where}.firewall[{i}]"
        robj = _map(r, rw)
        _no_unknown(robj, {"name", "start", "end"}, rw)
        start, end = _str(robj, "start", rw), _str(robj, "end", rw, robj.get("start"))
        for value in (start, end):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ScenarioError(f"{rw}: {value!r} is not an IP address") from None
        firewall.append((start, end))
    vault = obj.get("vault", first_vault)
    if vault is not None and str(vault).lower() not in vaults:
        raise ScenarioError(f"{where}.vault: no vault {vault!r} in vaults")
    return SqlServer(
        name=name,
        tenant_id=tenant_of(obj, where),
        cloud=cloud,
        databases=databases,
        firewall=firewall,
        vault=None if vault is None else vaults[str(vault).lower()].name,
    )


def _fault(data: Any, where: str) -> Fault:
    obj = _map(data, where)
    known = {
        "service",
        "method",
        "path",
        "host",
        "status",
        "times",
        "retry_after",
        "hang_s",
        "malformed",
        "truncated",
        "reset",
        "latency_ms",
        "for_s",
    }
    _no_unknown(obj, known, where)
    service = _str(obj, "service", where, "*")
    if service != "*" and service not in SERVICES:
        raise ScenarioError(f"{where}.service: {service!r} is not one of {', '.join(SERVICES)}")
    status = obj.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise ScenarioError(f"{where}.status: expected an HTTP status (100-599), got {status!r}")
    retry_after = obj.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float)
    ):
        raise ScenarioError(f"{where}.retry_after: expected seconds, got {retry_after!r}")
    hang = obj.get("hang_s", 0)
    if isinstance(hang, bool) or not isinstance(hang, int | float) or hang < 0:
        raise ScenarioError(f"{where}.hang_s: expected seconds, got {hang!r}")
    for_s = obj.get("for_s")
    if for_s is not None and (
        isinstance(for_s, bool) or not isinstance(for_s, int | float) or for_s <= 0
    ):
        raise ScenarioError(f"{where}.for_s: expected seconds (more than 0), got {for_s!r}")
    return Fault(
        service=service,
        method=_str(obj, "method", where, "*").upper(),
        path=_str(obj, "path", where, "*"),
        host=_str(obj, "host", where, "*"),
        status=status,
        times=_int(obj, "times", where, 0),
        retry_after=retry_after,
        hang_s=float(hang),
        malformed=_bool(obj, "malformed", where, False),
        truncated=_bool(obj, "truncated", where, False),
        reset=_bool(obj, "reset", where, False),
        latency_ms=_int(obj, "latency_ms", where, 0),
        for_s=None if for_s is None else float(for_s),
    )

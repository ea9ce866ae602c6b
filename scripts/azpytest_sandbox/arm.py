"""Azure Resource Manager: subscriptions, resource groups and AKS managed clusters.

Enough of ARM for the product, azure-mgmt-containerservice and the az CLI: the cluster's
credentials (`listClusterUserCredential`, `listClusterAdminCredential`) as AKS returns them,
the GETs `az login` and `az aks show` make, role-based access checks, and ARM's error shapes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import yaml

from .entra import Entra, Principal, TokenRejected
from .httpd import Request, Response
from .scenario import (
    AKS_SERVER_APP,
    AZURE_CLI_CLIENT_ID,
    Cluster,
    ResourceGroup,
    Scenario,
    Subscription,
)
from .tokens import now, unverified_claims

if TYPE_CHECKING:
    from .kubeapi import KubeAPIServer

ARM_AUDIENCES = {"https://management.azure.com", "https://management.core.windows.net"}


@dataclass(frozen=True)
class _Cloud:
    environment: str  # what kubelogin's --environment is given
    authority: str  # the cloud's Entra host
    audiences: frozenset[str]  # the token audiences this cloud's ARM takes


_CLOUDS = {
    "management.azure.com": _Cloud(
        "AzurePublicCloud", "login.microsoftonline.com", frozenset(ARM_AUDIENCES)
    ),
    "management.usgovcloudapi.net": _Cloud(
        "AzureUSGovernmentCloud",
        "login.microsoftonline.us",
        frozenset(
            {"https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net"}
        ),
    ),
    "management.chinacloudapi.cn": _Cloud(
        "AzureChinaCloud",
        "login.chinacloudapi.cn",
        frozenset(
            {"https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn"}
        ),
    ),
}

_USER_ROLES = {
    "azure kubernetes service cluster user role",
    "azure kubernetes service cluster admin role",
    "contributor",
    "owner",
}
_ADMIN_ROLES = {"azure kubernetes service cluster admin role", "contributor", "owner"}
# Reads need a role of any name over the scope (Reader included).
_ANY_ROLE: set[str] | None = None

# AKS's own text, blank lines included.
KUBELOGIN_INSTALL_HINT = (
    "\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n"
    "\nTo learn more, please go to https://aka.ms/aks/kubelogin\n"
)

_PROVIDER = ("providers", "microsoft.containerservice", "managedclusters")
_CREDENTIAL_ACTIONS = {
    "listclusterusercredential": ("clusterUser", "listClusterUserCredential", _USER_ROLES),
    "listclusteradmincredential": ("clusterAdmin", "listClusterAdminCredential", _ADMIN_ROLES),
}


class ARMError(Exception):
    """An answer in ARM's error shape: `{"error": {"code", "message"}}`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class _Caller:
    principal: Principal

    @property
    def client_id(self) -> str:
        return str(self.principal.claims.get("appid") or self.principal.app.client_id)

    @property
    def object_id(self) -> str:
        return str(self.principal.claims.get("oid") or self.principal.app.object_id)

    @property
    def tenant_id(self) -> str:
        return str(self.principal.claims.get("tid") or self.principal.app.tenant_id)


class ARM:
    name = "arm"

    def __init__(
        self,
        scenario: Scenario,
        entra: Entra,
        cluster_server: Callable[[str, str, str], KubeAPIServer | None],
    ) -> None:
        self.scenario = scenario
        self.entra = entra
        self.cluster_server = cluster_server

    def serves(self, host: str) -> bool:
        return host in _CLOUDS

    # ---------------------------------------------------------------- HTTP

    def handle(self, request: Request) -> Response:
        headers = _tracking_headers(request)
        try:
            response = self._route(request)
        except ARMError as exc:
            response = Response.json(
                exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers
            )
        response.headers.update(headers)
        return response

    def fault_response(self, status: int) -> Response:
        code, message = _FAULTS.get(
            status, ("InternalServerError", "Encountered internal server error.")
        )
        return Response.json(status, {"error": {"code": code, "message": message}})

    def _route(self, request: Request) -> Response:
        parts = [urllib.parse.unquote(p) for p in request.path.split("/") if p]
        lower = [p.lower() for p in parts]
        if "api-version" not in request.query:
            raise ARMError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if lower == ["subscriptions"]:
            self._only(request, "GET")
            return self._list_subscriptions(request)
        if lower == ["tenants"]:
            self._only(request, "GET")
            return self._list_tenants(request)
        if len(lower) < 2 or lower[0] != "subscriptions":
            raise _no_route(request)
        sub_ref, rest, rest_raw = lower[1], lower[2:], parts[2:]
        subscription = next((s for s in self.scenario.subscriptions if s.id == sub_ref), None)
        caller = self._authenticate(request, subscription)
        if subscription is None:
            raise ARMError(
                404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found."
            )
        sub_scope = f"/subscriptions/{parts[1]}"

        if rest == []:
            self._only(request, "GET")
            self._authorize(
                caller,
                subscription,
                sub_scope,
                "Microsoft.Resources/subscriptions/read",
                _ANY_ROLE,
                anywhere_below=True,
            )
            return Response.json(200, _subscription_json(subscription))
        if rest == ["resourcegroups"]:
            self._only(request, "GET")
            groups = [
                g
                for g in subscription.resource_groups.values()
                if self._allowed(caller, subscription, _group_id(subscription, g), _ANY_ROLE)
            ]
            return Response.json(200, {"value": [_group_json(subscription, g) for g in groups]})
        if rest == list(_PROVIDER):
            self._only(request, "GET")
            return self._list_clusters(caller, subscription, None)
        if len(rest) < 2 or rest[0] != "resourcegroups":
            raise _no_route(request)

        group_scope = f"{sub_scope}/resourceGroups/{rest_raw[1]}"
        group = subscription.resource_groups.get(rest[1])
        tail, tail_raw = rest[2:], rest_raw[2:]
        if tail == []:
            self._only(request, "GET")
            self._authorize(
                caller,
                subscription,
                group_scope,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                _ANY_ROLE,
            )
            return Response.json(200, _group_json(subscription, self._group(group, rest_raw[1])))
        if tail[:3] != list(_PROVIDER):
            raise _no_route(request)
        if len(tail) == 3:
            self._only(request, "GET")
            self._authorize(
                caller,
                subscription,
                group_scope,
                "Microsoft.ContainerService/managedClusters/read",
                _ANY_ROLE,
            )
            return self._list_clusters(caller, subscription, self._group(group, rest_raw[1]))

        cluster_name = tail_raw[3]
        cluster_scope = (
            f"{group_scope}/providers/Microsoft.ContainerService/managedClusters/{cluster_name}"
        )
        if len(tail) == 4:
            self._only(request, "GET")
            self._authorize(
                caller,
                subscription,
                cluster_scope,
                "Microsoft.ContainerService/managedClusters/read",
                _ANY_ROLE,
            )
            group = self._group(group, rest_raw[1])
            cluster = self._cluster(group, cluster_name)
            return Response.json(200, _cluster_json(subscription, group, cluster))
        if len(tail) == 5 and tail[4] in _CREDENTIAL_ACTIONS:
            self._only(request, "POST")
            kind, action, roles = _CREDENTIAL_ACTIONS[tail[4]]
            self._authorize(
                caller,
                subscription,
                cluster_scope,
                f"Microsoft.ContainerService/managedClusters/{action}/action",
                roles,
            )
            group = self._group(group, rest_raw[1])
            cluster = self._cluster(group, cluster_name)
            return self._credentials(request, subscription, group, cluster, kind)
        raise _no_route(request)

    # ---------------------------------------------------------------- checks

    @staticmethod
    def _only(request: Request, method: str) -> None:
        if request.method != method:
            raise ARMError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{request.method}'.",
            )

    def _authenticate(self, request: Request, subscription: Subscription | None) -> _Caller:
        tenant_id = subscription.tenant_id if subscription else None
        try:
            principal = self.entra.verify(
                request.bearer, audiences=set(_cloud(request).audiences), tenant_id=tenant_id
            )
        except TokenRejected as exc:
            raise self._unauthorized(request, tenant_id, exc.reason) from None
        caller = _Caller(principal)
        request.who = caller.client_id
        return caller

    def _unauthorized(self, request: Request, tenant_id: str | None, reason: str) -> ARMError:
        """ARM's 401 for this token: the code and text ARM gives for the same fault."""
        cloud = _cloud(request)
        authority = cloud.authority
        token = request.bearer
        claims: dict[str, Any] = {}
        if token:
            try:
                claims = unverified_claims(token)
            except jwt.PyJWTError:
                claims = {}
        token_tenant = str(claims.get("tid", "")) or None
        challenge_tenant = tenant_id or token_tenant or "common"
        audience = str(claims.get("aud", ""))
        expires = claims.get("exp")
        if not token:
            code = "AuthenticationFailed"
            message = "Authentication failed. The 'Authorization' header is missing."
        elif claims and audience.rstrip("/") not in cloud.audiences:
            code = "InvalidAuthenticationToken"
            allowed = "','".join(
                f"{a}{slash}" for a in sorted(cloud.audiences, reverse=True) for slash in ("/", "")
            )
            message = (
                f"The access token has been obtained for wrong audience or resource "
                f"'{audience}'. It should exactly match with one of the allowed audiences "
                f"'{allowed}'."
            )
        elif isinstance(expires, int | float) and expires <= now():
            code = "ExpiredAuthenticationToken"
            message = (
                f"The access token expiry UTC time '{_arm_time(expires)}' is earlier than "
                f"current UTC time '{_arm_time(now())}'."
            )
        elif tenant_id and token_tenant and token_tenant.lower() != tenant_id.lower():
            code = "InvalidAuthenticationTokenTenant"
            message = (
                f"The access token is from the wrong issuer '{claims.get('iss')}'. It must "
                f"match the tenant 'https://sts.windows.net/{tenant_id}/' associated with "
                f"this subscription. Please use the authority (URL) "
                f"'https://{authority}/{tenant_id}' to get the token. Note, if the "
                "subscription is transferred to another tenant there is no impact to the "
                "services, but information about new tenant could take time to propagate "
                "(up to an hour). If you just transferred your subscription and see this "
                "error message, please try back later."
            )
        else:
            code = "InvalidAuthenticationToken"
            message = f"The access token is invalid. {reason}"
        description = message.replace('"', "'")
        challenge = (
            f'Bearer authorization_uri="https://{authority}/{challenge_tenant}", '
            f'error="invalid_token", error_description="{description}"'
        )
        return ARMError(
            401, code, message, {"WWW-Authenticate": challenge, "x-ms-failure-cause": "gateway"}
        )

    def _allowed(
        self,
        caller: _Caller,
        subscription: Subscription,
        scope: str,
        roles: set[str] | None,
        anywhere_below: bool = False,
    ) -> bool:
        """Whether a role grant of the caller covers `scope` (or, if asked, lies under it)."""
        wanted = scope.rstrip("/").lower()
        identities = {
            caller.client_id.lower(),
            caller.object_id.lower(),
            caller.principal.app.name.lower(),
        }
        for grant in subscription.grants:
            if grant.principal.lower() not in identities:
                continue
            if roles is not None and grant.role.lower() not in roles:
                continue
            granted = grant.scope or f"/subscriptions/{subscription.id}"
            if wanted == granted or wanted.startswith(granted + "/"):
                return True
            if anywhere_below and granted.startswith(wanted + "/"):
                return True
        return False

    def _authorize(
        self,
        caller: _Caller,
        subscription: Subscription,
        scope: str,
        action: str,
        roles: set[str] | None,
        anywhere_below: bool = False,
    ) -> None:
        if self._allowed(caller, subscription, scope, roles, anywhere_below):
            return
        raise ARMError(
            403,
            "AuthorizationFailed",
            f"The client '{caller.client_id}' with object id '{caller.object_id}' does not have "
            f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
            "invalid. If access was recently granted, please refresh your credentials.",
        )

    @staticmethod
    def _group(group: ResourceGroup | None, name: str) -> ResourceGroup:
        if group is None:
            raise ARMError(
                404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found."
            )
        return group

    @staticmethod
    def _cluster(group: ResourceGroup, name: str) -> Cluster:
        cluster = group.clusters.get(name.lower())
        if cluster is None:
            raise ARMError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource "
                f"group '{group.name}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return cluster

    # ---------------------------------------------------------------- answers

    def _list_subscriptions(self, request: Request) -> Response:
        caller = self._authenticate(request, None)
        visible = [
            s
            for s in self.scenario.subscriptions
            if s.tenant_id.lower() == caller.tenant_id.lower()
            and self._allowed(caller, s, f"/subscriptions/{s.id}", _ANY_ROLE, anywhere_below=True)
        ]
        return Response.json(
            200,
            {
                "value": [_subscription_json(s) for s in visible],
                "count": {"type": "Total", "value": len(visible)},
            },
        )

    def _list_tenants(self, request: Request) -> Response:
        caller = self._authenticate(request, None)
        tenant = self.scenario.tenant(caller.tenant_id)
        items = []
        if tenant is not None:
            items.append(
                {
                    "id": f"/tenants/{tenant.id}",
                    "tenantId": tenant.id,
                    "countryCode": "US",
                    "displayName": tenant.name,
                    "domains": [f"{tenant.name}.onmicrosoft.com"],
                    "tenantCategory": "Home",
                    "defaultDomain": f"{tenant.name}.onmicrosoft.com",
                    "tenantType": "AAD",
                }
            )
        return Response.json(200, {"value": items})

    def _list_clusters(
        self,
        caller: _Caller,
        subscription: Subscription,
        group: ResourceGroup | None,
    ) -> Response:
        groups = [group] if group else list(subscription.resource_groups.values())
        items = [
            _cluster_json(subscription, g, c)
            for g in groups
            for c in g.clusters.values()
            if self._allowed(caller, subscription, _cluster_id(subscription, g, c), _ANY_ROLE)
        ]
        return Response.json(200, {"value": items})

    def _credentials(
        self,
        request: Request,
        subscription: Subscription,
        group: ResourceGroup,
        cluster: Cluster,
        kind: str,
    ) -> Response:
        server = self.cluster_server(subscription.id, group.name, cluster.name)
        if server is None:
            raise ARMError(
                500,
                "InternalServerError",
                f"The sandbox runs no API server for cluster '{cluster.name}'.",
            )
        fmt = request.query.get("format", "exec").lower()
        if fmt not in ("exec", "azure"):
            raise ARMError(
                400,
                "InvalidParameter",
                f"The value '{request.query['format']}' of parameter 'format' is not "
                "valid. Allowed values are 'azure' and 'exec'.",
            )
        environment = _cloud(request).environment
        user_name = f"{kind}_{group.name}_{cluster.name}"
        if kind == "clusterUser" and cluster.entra:
            user = _entra_user(subscription.tenant_id, environment, fmt)
        else:
            cert, key = server.client_certificate()
            user = {
                "client-certificate-data": base64.b64encode(cert).decode(),
                "client-key-data": base64.b64encode(key).decode(),
            }
        # AKS names the admin context "<cluster>-admin" so it does not replace the user's.
        context = f"{cluster.name}-admin" if kind == "clusterAdmin" else cluster.name
        kubeconfig = {
            "apiVersion": "v1",
            "clusters": [
                {
                    "cluster": {
                        "certificate-authority-data": base64.b64encode(server.ca_pem).decode(),
                        "server": server.url,
                    },
                    "name": cluster.name,
                }
            ],
            "contexts": [
                {
                    "context": {"cluster": cluster.name, "user": user_name},
                    "name": context,
                }
            ],
            "current-context": context,
            "kind": "Config",
            "preferences": {},
            "users": [{"name": user_name, "user": user}],
        }
        text = yaml.safe_dump(kubeconfig, default_flow_style=False, sort_keys=True)
        value = base64.b64encode(text.encode()).decode()
        return Response.json(200, {"kubeconfigs": [{"name": kind, "value": value}]})


# -------------------------------------------------------------------- shapes


_FAULTS = {
    429: (
        "TooManyRequests",
        "The request is being throttled; retry after the time given in the Retry-After header.",
    ),
    500: ("InternalServerError", "Encountered internal server error."),
    502: ("BadGateway", "The gateway did not receive a response from the resource provider."),
    503: (
        "ServiceUnavailable",
        "The server is currently unable to receive requests. Please retry your request.",
    ),
    504: (
        "GatewayTimeout",
        "The gateway did not receive a response from "
        "'Microsoft.ContainerService' within the specified time period.",
    ),
}


def _cloud(request: Request) -> _Cloud:
    return _CLOUDS.get(request.host, _CLOUDS["management.azure.com"])


def _no_route(request: Request) -> ARMError:
    return ARMError(404, "NotFound", f"The requested path '{request.path}' was not found.")


def _tracking_headers(request: Request) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    correlation = request.headers.get("x-ms-correlation-request-id") or request_id
    return {
        "x-ms-request-id": request_id,
        "x-ms-correlation-request-id": correlation,
        "x-ms-routing-request-id": f"EASTUS:{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
        f":{request_id}",
    }


def _arm_time(epoch: float) -> str:
    stamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return (
        f"{stamp.month}/{stamp.day}/{stamp.year} "
        f"{stamp.strftime('%I').lstrip('0')}:{stamp:%M:%S %p}"
    )


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts).lower()))


def _group_id(subscription: Subscription, group: ResourceGroup) -> str:
    return f"/subscriptions/{subscription.id}/resourceGroups/{group.name}"


def _cluster_id(subscription: Subscription, group: ResourceGroup, cluster: Cluster) -> str:
    # AKS spells the group segment in lower case in the ids it returns.
    return (
        f"/subscriptions/{subscription.id}/resourcegroups/{group.name}/providers/"
        f"Microsoft.ContainerService/managedClusters/{cluster.name}"
    )


def _subscription_json(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription.id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription.id,
        "tenantId": subscription.tenant_id,
        "displayName": subscription.name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def _group_json(subscription: Subscription, group: ResourceGroup) -> dict[str, Any]:
    return {
        "id": _group_id(subscription, group),
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "properties": {"provisioningState": "Succeeded"},
    }


def _cluster_json(
    subscription: Subscription, group: ResourceGroup, cluster: Cluster
) -> dict[str, Any]:
    cid = _cluster_id(subscription, group, cluster)
    dns_prefix = f"{cluster.name}-{group.name}-{subscription.id[:6]}"[:54]
    suffix = hashlib.sha256(cid.lower().encode()).hexdigest()[:8]
    fqdn = f"{dns_prefix}-{suffix}.hcp.{cluster.location}.azmk8s.io"
    node_group = f"MC_{group.name}_{cluster.name}_{cluster.location}"
    version = cluster.kubernetes_version
    properties: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "powerState": {"code": "Running"},
        "kubernetesVersion": version,
        "currentKubernetesVersion": version,
        "dnsPrefix": dns_prefix,
        "fqdn": fqdn,
        "azurePortalFQDN": f"{dns_prefix}-{suffix}.portal.hcp.{cluster.location}.azmk8s.io",
        "agentPoolProfiles": [
            {
                "name": "nodepool1",
                "count": 1,
                "vmSize": "Standard_D2s_v5",
                "osDiskSizeGB": 128,
                "osDiskType": "Managed",
                "kubeletDiskType": "OS",
                "maxPods": 250,
                "type": "VirtualMachineScaleSets",
                "enableAutoScaling": False,
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running"},
                "orchestratorVersion": version,
                "currentOrchestratorVersion": version,
                "enableNodePublicIP": False,
                "mode": "System",
                "osType": "Linux",
                "osSKU": "Ubuntu",
                "enableFIPS": False,
            }
        ],
        "servicePrincipalProfile": {"clientId": "msi"},
        "nodeResourceGroup": node_group,
        "enableRBAC": True,
        "supportPlan": "KubernetesOfficial",
        "networkProfile": {
            "networkPlugin": "azure",
            "networkPluginMode": "overlay",
            "networkPolicy": "none",
            "loadBalancerSku": "standard",
            "podCidr": "10.244.0.0/16",
            "serviceCidr": "10.0.0.0/16",
            "dnsServiceIP": "10.0.0.10",
            "outboundType": "loadBalancer",
            "podCidrs": ["10.244.0.0/16"],
            "serviceCidrs": ["10.0.0.0/16"],
            "ipFamilies": ["IPv4"],
        },
        "maxAgentPools": 100,
        "identityProfile": {
            "kubeletidentity": {
                "resourceId": (
                    f"/subscriptions/{subscription.id}/resourcegroups/{node_group}/"
                    f"providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                    f"{cluster.name}-agentpool"
                ),
                "clientId": _guid(cid, "kubeletidentity", "client"),
                "objectId": _guid(cid, "kubeletidentity", "object"),
            }
        },
        "disableLocalAccounts": False,
        "oidcIssuerProfile": {"enabled": False},
    }
    if cluster.entra:
        properties["aadProfile"] = {
            "managed": True,
            "enableAzureRBAC": False,
            "tenantID": subscription.tenant_id,
        }
    return {
        "id": cid,
        "location": cluster.location,
        "name": cluster.name,
        "type": "Microsoft.ContainerService/ManagedClusters",
        "properties": properties,
        "identity": {
            "type": "SystemAssigned",
            "principalId": _guid(cid, "identity"),
            "tenantId": subscription.tenant_id,
        },
        "sku": {"name": "Base", "tier": "Free"},
    }


def _entra_user(tenant_id: str, environment: str, fmt: str) -> dict[str, Any]:
    if fmt == "azure":
        # The legacy auth-provider form, still returned for `format=azure`.
        return {
            "auth-provider": {
                "name": "azure",
                "config": {
                    "apiserver-id": AKS_SERVER_APP,
                    "client-id": AZURE_CLI_CLIENT_ID,
                    "config-mode": "1",
                    "environment": environment,
                    "tenant-id": tenant_id,
                },
            }
        }
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "args": [
                "get-token",
                "--environment",
                environment,
                "--server-id",
                AKS_SERVER_APP,
                "--client-id",
                AZURE_CLI_CLIENT_ID,
                "--tenant-id",
                tenant_id,
                "--login",
                "devicecode",
            ],
            "command": "kubelogin",
            "env": None,
            "installHint": KUBELOGIN_INSTALL_HINT,
            "provideClusterInfo": False,
        }
    }


__all__ = ["ARM", "ARM_AUDIENCES", "KUBELOGIN_INSTALL_HINT"]

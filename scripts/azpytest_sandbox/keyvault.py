"""Azure Key Vault's secrets API: the 401 challenge, get, versions, paged lists and RBAC."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from .entra import Entra, Principal, TokenRejected
from .httpd import Request, Response
from .scenario import Scenario, Secret, SecretVersion, Vault

# Vault host suffix -> the resource its tokens are for (the real clouds').
VAULT_SUFFIXES = {
    ".vault.azure.net": "https://vault.azure.net",
    ".vault.usgovcloudapi.net": "https://vault.usgovcloudapi.net",
    ".vault.azure.cn": "https://vault.azure.cn",
}
_AUTHORITY = {
    ".vault.azure.net": "https://login.microsoftonline.com",
    ".vault.usgovcloudapi.net": "https://login.microsoftonline.us",
    ".vault.azure.cn": "https://login.chinacloudapi.cn",
}
PAGE_SIZE = 25


def _suffix(host: str) -> str | None:
    return next((s for s in VAULT_SUFFIXES if host.endswith(s)), None)


def _epoch(stamp: Any) -> int:
    return int(stamp.timestamp())


class KeyVault:
    name = "keyvault"

    def __init__(self, scenario: Scenario, entra: Entra) -> None:
        self.scenario = scenario
        self.entra = entra

    def serves(self, host: str) -> bool:
        suffix = _suffix(host)
        return suffix is not None and host[: -len(suffix)] in self.scenario.vaults

    def fault_response(self, status: int) -> Response:
        code = {429: "Throttled", 503: "ServiceUnavailable"}.get(status, "InternalServerError")
        return Response.json(
            status, {"error": {"code": code, "message": f"Sandbox fault: HTTP {status}."}}
        )

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: Request) -> Response:
        suffix = _suffix(request.host)
        assert suffix is not None
        vault = self.scenario.vaults[request.host[: -len(suffix)]]
        resource = VAULT_SUFFIXES[suffix]
        try:
            principal = self.entra.verify(request.bearer, {resource}, vault.tenant_id)
        except TokenRejected as exc:
            return self._challenge(vault, suffix, exc.reason, request.bearer is not None)
        request.who = principal.app.client_id
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The request URI contains an invalid api-version.")
        if request.method != "GET":
            return _error(
                405,
                "BadParameter",
                f"The sandbox vault is read-only: {request.method} is not served.",
            )
        parts = [urllib.parse.unquote(p) for p in request.path.split("/") if p]
        base = f"https://{request.host}"
        if parts == ["secrets"]:
            return self._list(request, vault, principal, base)
        if len(parts) in (2, 3) and parts[0] == "secrets":
            name = parts[1]
            if len(parts) == 3 and parts[2] == "versions":
                return self._versions(request, vault, principal, base, name)
            return self._get(vault, principal, base, name, parts[2] if len(parts) == 3 else "")
        return _error(404, "NotFound", f"No route for {request.path}.")

    def _challenge(self, vault: Vault, suffix: str, reason: str, had_token: bool) -> Response:
        authority = f"{_AUTHORITY[suffix]}/{vault.tenant_id}"
        header = f'Bearer authorization="{authority}", resource="{VAULT_SUFFIXES[suffix]}"'
        message = f"AKV10000: {reason}" if not had_token else f"AKV10022: {reason}"
        return Response.json(
            401,
            {"error": {"code": "Unauthorized", "message": message}},
            {"WWW-Authenticate": header},
        )

    def _allowed(self, vault: Vault, principal: Principal, secret: str | None) -> bool:
        app = principal.app
        ids = {app.name.lower(), app.client_id.lower(), app.object_id.lower()}
        for grant in vault.grants:
            if grant.principal.lower() not in ids:
                continue
            if grant.scope == "*" or (secret is not None and grant.scope.lower() == secret.lower()):
                return True
        return False

    def _forbidden(
        self, vault: Vault, principal: Principal, action: str, resource: str
    ) -> Response:
        claims = principal.claims
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: appid={claims.get('appid')};oid={claims.get('oid')};"
            f"iss={claims.get('iss')}\r\n"
            f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}'\r\n"
            f"Resource: '{resource}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {vault.name};location={vault.location}\r\n"
        )
        return Response.json(
            403,
            {
                "error": {
                    "code": "Forbidden",
                    "message": message,
                    "innererror": {"code": "ForbiddenByRbac"},
                }
            },
        )

    def _resource_id(self, vault: Vault, secret: str | None = None) -> str:
        sub = self.scenario.subscriptions[0].id if self.scenario.subscriptions else "0" * 8
        rid = (
            f"/subscriptions/{sub}/resourcegroups/rg-vaults/providers/"
            f"microsoft.keyvault/vaults/{vault.name.lower()}"
        )
        return f"{rid}/secrets/{secret}" if secret else rid

    def _get(
        self, vault: Vault, principal: Principal, base: str, name: str, version: str
    ) -> Response:
        secret = vault.secrets.get(name.lower())
        if not self._allowed(vault, principal, name):
            return self._forbidden(
                vault, principal, "getSecret/action", self._resource_id(vault, name)
            )
        found = None
        if secret is not None:
            found = (
                secret.current
                if not version
                else next((v for v in secret.versions if v.version == version), None)
            )
        if secret is None or found is None:
            what = name if not version else f"{name}/{version}"
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {what} was not found in this key vault. If you recently "
                "deleted this secret you may be able to recover it using the correct recovery "
                "command. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        if not found.enabled:
            return Response.json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Operation get is not allowed on a disabled secret.",
                        "innererror": {"code": "SecretDisabled"},
                    }
                },
            )
        # Key Vault serves expired and not-yet-valid secrets; the caller must check `exp`.
        return Response.json(200, {"value": found.value, **_bundle(base, secret, found, True)})

    def _page(
        self, request: Request, base: str, path: str, items: list[dict[str, Any]]
    ) -> Response:
        try:
            size = max(1, min(25, int(request.query.get("maxresults") or PAGE_SIZE)))
            token = request.query.get("$skiptoken")
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            return _error(400, "BadParameter", "Invalid $skiptoken or maxresults.")
        page = items[start : start + size]
        next_link = None
        if start + size < len(items):
            query = urllib.parse.urlencode(
                {
                    "api-version": request.query["api-version"],
                    "$skiptoken": base64.urlsafe_b64encode(str(start + size).encode()).decode(),
                    "maxresults": size,
                }
            )
            next_link = f"{base}{path}?{query}"
        return Response.json(200, {"value": page, "nextLink": next_link})

    def _list(self, request: Request, vault: Vault, principal: Principal, base: str) -> Response:
        if not self._allowed(vault, principal, None):
            return self._forbidden(
                vault, principal, "readMetadata/action", self._resource_id(vault)
            )
        items = [
            _bundle(base, s, s.current, False)
            for s in sorted(vault.secrets.values(), key=lambda s: s.name.lower())
        ]
        return self._page(request, base, "/secrets", items)

    def _versions(
        self, request: Request, vault: Vault, principal: Principal, base: str, name: str
    ) -> Response:
        if not self._allowed(vault, principal, name):
            return self._forbidden(
                vault, principal, "readMetadata/action", self._resource_id(vault, name)
            )
        secret = vault.secrets.get(name.lower())
        items = [] if secret is None else [_bundle(base, secret, v, True) for v in secret.versions]
        return self._page(request, base, f"/secrets/{name}/versions", items)


def _bundle(
    base: str, secret: Secret, version: SecretVersion, with_version: bool
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "enabled": version.enabled,
        "created": _epoch(version.created),
        "updated": _epoch(version.created),
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }
    if version.expires is not None:
        attributes["exp"] = _epoch(version.expires)
    if version.not_before is not None:
        attributes["nbf"] = _epoch(version.not_before)
    sid = f"{base}/secrets/{secret.name}"
    bundle: dict[str, Any] = {
        "id": f"{sid}/{version.version}" if with_version else sid,
        "attributes": attributes,
        "tags": version.tags,
    }
    if version.content_type is not None:
        bundle["contentType"] = version.content_type
    return bundle


def _error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}})

"""Microsoft Entra ID: the v2.0 token endpoint, discovery, and the checks resources make.

Client credentials with a federated client assertion (checked against the issuer's key and
the app's federated identity credentials: issuer, subject exactly, audience) or with a
client secret. Refusals use Entra's JSON shape and AADSTS codes, so the real SDKs raise
what they raise against the real service.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from .httpd import Request, Response
from .scenario import GITHUB_ISSUER, App, Scenario, Tenant
from .tokens import SigningKey, now, token_id, unverified_claims

AUTHORITY_HOSTS = (
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Principal:
    """Who a verified access token speaks for."""

    app: App
    claims: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.app.name}({self.app.client_id})"


class TokenRejected(Exception):
    """An access token a resource must refuse; `reason` is what the resource says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _stamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class Entra:
    name = "entra"

    def __init__(
        self, scenario: Scenario, key: SigningKey, issuer_keys: dict[str, SigningKey]
    ) -> None:
        self.scenario = scenario
        self.key = key
        # Keys of the identity providers Entra trusts for federated credentials, by issuer.
        self.issuer_keys = issuer_keys

    def serves(self, host: str) -> bool:
        return host in AUTHORITY_HOSTS

    # ---------------------------------------------------------------- issuing

    def access_token(
        self, app: App, resource: str, lifetime_s: int | None = None, acr: str = "2"
    ) -> tuple[str, int]:
        issued = now()
        lifetime = self.scenario.token_lifetime_s if lifetime_s is None else lifetime_s
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{app.tenant_id}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "aio": token_id(),
            "app_displayname": app.name,
            "appid": app.client_id,
            "appidacr": acr,
            "idp": f"https://sts.windows.net/{app.tenant_id}/",
            "oid": app.object_id,
            "rh": token_id(),
            "roles": list(app.roles),
            "sub": app.object_id,
            "tid": app.tenant_id,
            "uti": token_id(),
            "ver": "1.0",
            "xms_mirid": f"/apps/{app.name}",
        }
        return self.key.sign(claims), lifetime

    # ---------------------------------------------------------------- checking (for resources)

    def verify(
        self, token: str | None, audiences: set[str], tenant_id: str | None = None
    ) -> Principal:
        """The principal behind a bearer token, or TokenRejected naming why not."""
        if not token:
            raise TokenRejected("Request is missing a Bearer or PoP token.")
        try:
            claims = self.key.verify(token)
        except jwt.ExpiredSignatureError:
            raise TokenRejected("Token expired.") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"Token validation failed: {exc}") from None
        audience = str(claims.get("aud", ""))
        if audience.rstrip("/") not in {a.rstrip("/") for a in audiences}:
            expected = ", ".join(sorted(audiences))
            raise TokenRejected(f"Invalid audience. Expected {expected}, found: {audience}.")
        if tenant_id and str(claims.get("tid", "")).lower() != tenant_id.lower():
            raise TokenRejected(
                f"Invalid issuer. Expected https://sts.windows.net/{tenant_id}/, "
                f"found: {claims.get('iss')}."
            )
        app = self.scenario.app_by_principal(str(claims.get("appid", "")))
        if app is None:
            raise TokenRejected("Token validation failed: unknown application.")
        return Principal(app=app, claims=claims)

    # ---------------------------------------------------------------- HTTP

    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] == ["common", "discovery"] and parts[2:] == ["instance"]:
            return self._instance_discovery(request)
        if len(parts) < 2:
            return Response.json(404, {"error": "not_found"})
        tenant_ref, rest = parts[0], parts[1:]
        if rest == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid_configuration(request, tenant_ref)
        if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]):
            return Response.json(200, {"keys": [self.key.jwk()]})
        if rest == ["oauth2", "v2.0", "token"] and request.method == "POST":
            return self._token(request, tenant_ref)
        return Response.json(
            404, {"error": "not_found", "error_description": f"no such endpoint {request.path}"}
        )

    def fault_response(self, status: int) -> Response:
        code = "temporarily_unavailable" if status >= 500 else "invalid_request"
        if status == 429:
            return self._error(
                429,
                "temporarily_unavailable",
                50196,
                "The server encountered a client request loop. Please try your "
                "request again after some time.",
            )
        return self._error(status, code, 90033, "A transient error has occurred. Please try again.")

    def _instance_discovery(self, request: Request) -> Response:
        host = request.host
        return Response.json(
            200,
            {
                "tenant_discovery_endpoint": f"https://{host}/common/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": host,
                        "preferred_cache": host,
                        "aliases": [host],
                    }
                ],
            },
        )

    def _openid_configuration(self, request: Request, tenant_ref: str) -> Response:
        tenant = self.scenario.tenant(tenant_ref)
        if tenant is None and tenant_ref not in ("common", "organizations"):
            return self._tenant_not_found(tenant_ref)
        tid = tenant.id if tenant else "{tenantid}"
        base = f"https://{request.host}/{tenant_ref}"
        return Response.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"https://{request.host}/{tenant_ref}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"https://{request.host}/{tid}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def _token(self, request: Request, tenant_ref: str) -> Response:
        form = request.form()
        tenant = self.scenario.tenant(tenant_ref)
        if tenant is None:
            return self._tenant_not_found(tenant_ref)
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return self._error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        app = next((a for a in tenant.apps if a.client_id == client_id.lower()), None)
        if app is None:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.name}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. You "
                "may have sent your authentication request to the wrong tenant.",
            )
        request.who = app.client_id
        scope = form.get("scope", "")
        resource = _resource_of(scope)
        if resource is None:
            return self._error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return self._error(
                    400,
                    "invalid_request",
                    50027,
                    "Invalid client_assertion_type; expected jwt-bearer.",
                )
            refusal = self._check_assertion(form["client_assertion"], app, tenant)
            acr = "2"
        elif "client_secret" in form:
            refusal = self._check_secret(form["client_secret"], app)
            acr = "1"
        else:
            return self._error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if refusal is not None:
            return refusal
        token, lifetime = self.access_token(app, resource, acr=acr)
        return Response.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    def _check_secret(self, secret: str, app: App) -> Response | None:
        if any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.secrets):
            return None
        return self._error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{app.client_id}'.",
        )

    def _check_assertion(self, assertion: str, app: App, tenant: Tenant) -> Response | None:
        try:
            unverified = unverified_claims(assertion)
        except jwt.PyJWTError:
            return self._error(
                400, "invalid_client", 50027, "Invalid JWT token. The token is malformed."
            )
        issuer = str(unverified.get("iss", ""))
        subject = str(unverified.get("sub", ""))
        audience = unverified.get("aud", "")
        audiences = audience if isinstance(audience, list) else [str(audience)]
        key = self.issuer_keys.get(issuer)
        if key is None:
            return self._no_match(issuer, subject, audiences)
        try:
            key.verify(assertion, verify_exp=False, verify_nbf=False, verify_iat=False)
        except jwt.PyJWTError:
            return self._error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. Signature key was not found in "
                f"the keys published by issuer '{issuer}'.",
            )
        current = now()
        nbf = int(unverified.get("nbf", unverified.get("iat", 0)))
        exp = int(unverified.get("exp", 0))
        if not nbf - 300 <= current < exp:
            return self._error(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: "
                f"{_stamp(current)}, assertion valid from {_stamp(nbf)}, expiry time of assertion "
                f"{_stamp(exp)}. Review the documentation at "
                "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            )
        for cred in app.federated_credentials:
            if (
                cred.issuer == issuer
                and cred.subject == subject
                and any(a in cred.audiences for a in audiences)
            ):
                return None
        for cred in app.federated_credentials:
            if (
                cred.issuer == issuer
                and cred.subject.lower() == subject.lower()
                and cred.subject != subject
                and any(a in cred.audiences for a in audiences)
            ):
                return self._error(
                    400,
                    "invalid_request",
                    7002138,
                    "No matching federated identity record found for presented assertion "
                    f"subject '{subject}'. Please note that matching is done using a "
                    f"case-sensitive comparison of the federated credential subject "
                    f"'{cred.subject}'. Check your federated identity credential Subject, "
                    "Audience and Issuer against the presented assertion.",
                )
        return self._no_match(issuer, subject, audiences)

    def _no_match(self, issuer: str, subject: str, audiences: list[str]) -> Response:
        return self._error(
            400,
            "invalid_request",
            70021,
            "No matching federated identity record found for presented assertion. Assertion "
            f"Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
            f"'{','.join(audiences)}'. https://learn.microsoft.com/entra/workload-id/"
            "workload-identity-federation",
        )

    def _tenant_not_found(self, tenant_ref: str) -> Response:
        return self._error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. Check with your subscription administrator, "
            "this may happen if there are no active subscriptions for the tenant.",
        )

    @staticmethod
    def _error(status: int, error: str, code: int, text: str) -> Response:
        trace, correlation = uuid.uuid4(), uuid.uuid4()
        stamp = dt.datetime.now(dt.timezone.utc)
        description = (
            f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {stamp:%Y-%m-%d %H:%M:%SZ}"
        )
        return Response.json(
            status,
            {
                "error": error,
                "error_description": description,
                "error_codes": [code],
                "timestamp": f"{stamp:%Y-%m-%d %H:%M:%SZ}",
                "trace_id": str(trace),
                "correlation_id": str(correlation),
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
        )


def _resource_of(scope: str) -> str | None:
    """`https://vault.azure.net/.default` -> `https://vault.azure.net`; other scopes -> None."""
    wanted = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
    if len(wanted) != 1 or not wanted[0].endswith("/.default"):
        return None
    return wanted[0][: -len("/.default")].rstrip("/") or None


__all__ = ["GITHUB_ISSUER", "Entra", "Principal", "TokenRejected"]

"""Which credential the job uses, and why a token could not be had.

Inside GitHub Actions: GitHub OIDC only. `ClientAssertionCredential` calls `GitHubAssertion`
for every Entra request, and each call asks GitHub for a new token, so access tokens keep
renewing for a run of any length (a token file re-read every 600 s would hand Entra expired
5-minute assertions). Outside Actions: `DefaultAzureCredential` (az login, environment,
managed identity). The choice is printed; a token never is.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import requests
from azure.core.credentials import (
    AccessToken,
    AccessTokenInfo,
    TokenCredential,
    TokenRequestOptions,
)
from azure.core.exceptions import ClientAuthenticationError

from azpytest import errors, http
from azpytest.github import Workflow
from azpytest.settings import Settings

T = TypeVar("T")

# The claims kept from the GitHub token for diagnosis (never the token itself).
DIAGNOSTIC_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "job_workflow_ref",
    "ref",
    "environment",
    "event_name",
    "repository",
    "run_id",
    "run_attempt",
)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: only for diagnosis and display, never for trust."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class GitHubAssertion:
    """The `func` of ClientAssertionCredential: a fresh GitHub OIDC token on every call.

    A 429, a 5xx, a reset, a timeout or a body that is not JSON is asked again with backoff
    until the deadline (http.Timeouts); then the diagnosis names GitHub OIDC and its host."""

    def __init__(
        self, workflow: Workflow, audience: str, timeouts: http.Timeouts | None = None
    ) -> None:
        self.workflow = workflow
        self.audience = audience
        self.timeouts = timeouts or http.Timeouts()
        self.claims: dict[str, Any] = {}
        self.requests = 0
        self._session = http.session(workflow.environ, timeouts=self.timeouts)

    def __call__(self) -> str:
        environ = self.workflow.environ
        url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        request_token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not url or not request_token:
            raise errors.no_oidc_request(environ)
        separator = "&" if "?" in url else "?"
        full = f"{url}{separator}audience={urllib.parse.quote(self.audience, safe='')}"
        host = urllib.parse.urlsplit(url).hostname or url

        def attempt(timeout: tuple[float, float]) -> str:
            try:
                answer = self._session.get(
                    full, headers={"Authorization": f"Bearer {request_token}"}, timeout=timeout
                )
            except requests.RequestException as exc:
                transient = http.network_transient(exc, self.timeouts)
                if transient is None:
                    raise errors.unreachable(host, str(exc), environ) from None
                raise transient from None
            status = answer.status_code
            if status == 429 or status >= 500:
                raise http.Transient(f"HTTP {status}", retry_after=http.retry_after(answer.headers))
            if status != 200:
                raise errors.oidc_request_failed(status, host)
            try:
                return str(answer.json()["value"])
            except (ValueError, KeyError, TypeError):
                raise http.Transient(errors.not_json(status, answer.content)) from None

        try:
            token = http.retrying(attempt, self.timeouts)
        except http.GaveUp as gave_up:
            raise errors.service_unavailable(
                service=errors.GITHUB_OIDC, host=host, said=gave_up.summary(), environ=environ
            ) from None
        self.workflow.mask(token)
        self.requests += 1
        claims = unverified_claims(token)
        self.claims = {k: claims[k] for k in DIAGNOSTIC_CLAIMS if k in claims}
        return token


def azure_transient(exc: Exception, timeouts: http.Timeouts) -> http.Transient | None:
    """An Entra failure worth asking again (429, 5xx, AADSTS90033, a reset, a timeout, a body
    that is not JSON); None for a refusal."""
    from azure.core.exceptions import (
        DecodeError,
        HttpResponseError,
        ServiceRequestError,
        ServiceRequestTimeoutError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )

    if isinstance(exc, ServiceRequestTimeoutError):
        return http.Transient(
            "no connection", bound=f"the connect timeout of {timeouts.connect:.3g} s"
        )
    if isinstance(exc, ServiceResponseTimeoutError):
        return http.Transient("no answer", bound=f"the read timeout of {timeouts.read:.3g} s")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return http.Transient(f"the connection failed ({http.reason(exc)})")
    if isinstance(exc, DecodeError):
        response: Any = exc.response
        body = response.body() if response is not None else b""
        return http.Transient(errors.not_json(exc.status_code or 200, body))
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        message = str(exc.message if hasattr(exc, "message") else exc)
        if status == 429 or status >= 500 or errors.aadsts_code(message) == 90033:
            code = errors.aadsts_code(message)
            response = exc.response
            headers = getattr(response, "headers", None) or {}
            return http.Transient(
                f"HTTP {status}" + (f" AADSTS{code}" if code else ""),
                retry_after=http.retry_after(headers),
            )
    return None


@dataclass
class Identity:
    """The job's credential, wrapped so that every token is masked and every refusal diagnosed.

    It is itself a credential (get_token / get_token_info) to hand to any Azure SDK client.
    Concurrent requests for one scope make one token request (the rest wait for its cache).
    """

    credential: TokenCredential
    description: str
    tenant_id: str | None
    client_id: str | None
    workflow: Workflow
    assertion: GitHubAssertion | None = None
    principal: dict[str, str] = field(default_factory=dict)  # appid/oid from the last token
    timeouts: http.Timeouts = field(default_factory=http.Timeouts)
    authority: str = "login.microsoftonline.com"  # Entra's host, for diagnoses
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def _lock(self, scopes: tuple[str, ...], options: Mapping[str, Any]) -> threading.Lock:
        key = f"{' '.join(scopes)}|{options.get('tenant_id')}|{options.get('enable_cae')}"
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _seen(self, token: str) -> None:
        self.workflow.mask(token)
        claims = unverified_claims(token)
        for name in ("appid", "azp", "oid", "tid"):
            if name in claims:
                self.principal[name] = str(claims[name])

    def _own_tenant(self, tenant_id: str | None, scopes: tuple[str, ...]) -> str | None:
        """The tenant to ask for. A service's challenge (Key Vault's) names the tenant by its
        id; an identity configured with the tenant's domain (`contoso.onmicrosoft.com`, which
        Entra accepts) is the same tenant when its tokens' `tid` says so: ask as configured."""
        if not tenant_id or not self.tenant_id or _GUID.match(self.tenant_id):
            return tenant_id
        if "tid" not in self.principal:
            self.get_token_info(*scopes)  # learns the tenant's id from the token (`tid`)
        return None if self.principal.get("tid", "").lower() == tenant_id.lower() else tenant_id

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        tenant_id = self._own_tenant(tenant_id, scopes)
        options = {"tenant_id": tenant_id, "enable_cae": enable_cae}
        with self._lock(scopes, options):
            token = self._asking(
                lambda: self.credential.get_token(
                    *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
                )
            )
        self._seen(token.token)
        return token

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        opts: Mapping[str, Any] = options or {}
        if opts.get("tenant_id"):
            own = self._own_tenant(str(opts["tenant_id"]), scopes)
            if own is None:
                opts = {k: v for k, v in opts.items() if k != "tenant_id"}
                options = cast(TokenRequestOptions, opts)

        def ask() -> AccessTokenInfo:
            if hasattr(self.credential, "get_token_info"):
                info: AccessTokenInfo = self.credential.get_token_info(*scopes, options=options)
                return info
            token = self.credential.get_token(*scopes, **dict(opts))
            return AccessTokenInfo(token.token, token.expires_on)

        with self._lock(scopes, opts):
            info = self._asking(ask)
        self._seen(info.token)
        return info

    def _asking(self, ask: Callable[[], T]) -> T:
        """Ask Entra (with the job's GitHub assertion) until the deadline while its answers
        are transient; a refusal is diagnosed at once. Outside Actions, DefaultAzureCredential
        is asked once (its chain has its own retries)."""
        if self.assertion is None:
            try:
                return ask()
            except ClientAuthenticationError as exc:
                raise self.diagnose(exc) from None

        def attempt(_timeout: tuple[float, float]) -> T:
            try:
                return ask()
            except errors.Diagnosis:
                raise
            except Exception as exc:
                transient = azure_transient(exc, self.timeouts)
                if transient is not None:
                    raise transient from None
                if isinstance(exc, ClientAuthenticationError):
                    raise self.diagnose(exc) from None
                raise

        try:
            return http.retrying(attempt, self.timeouts)
        except http.GaveUp as gave_up:
            raise errors.service_unavailable(
                service=errors.ENTRA,
                host=self.authority,
                said=gave_up.summary(),
                environ=self.workflow.environ,
            ) from None

    def diagnose(self, exc: ClientAuthenticationError) -> errors.Diagnosis:
        message = str(exc.message if hasattr(exc, "message") else exc)
        if self.assertion is None:
            return errors.local_credential_failed(message)
        return errors.entra_refused(
            message,
            tenant_id=self.tenant_id or "?",
            client_id=self.client_id or "?",
            claims=self.assertion.claims,
            audience=self.assertion.audience,
        )

    def close(self) -> None:
        close = getattr(self.credential, "close", None)
        if callable(close):
            close()


def build(settings: Settings, workflow: Workflow) -> Identity:
    """The explicit choice: GitHub OIDC inside Actions, DefaultAzureCredential outside."""
    timeouts = http.Timeouts(settings.timeout)
    authority = urllib.parse.urlsplit(settings.cloud.authority_host).hostname
    authority = authority or settings.cloud.authority_host
    if settings.in_actions:
        from azure.identity import ClientAssertionCredential

        assert settings.tenant_id and settings.client_id  # settings requires both in Actions
        assertion = GitHubAssertion(workflow, settings.audience, timeouts)
        credential = ClientAssertionCredential(
            settings.tenant_id,
            settings.client_id,
            assertion,
            authority=settings.cloud.authority_host,
            # The bounds go to the transport (a client ignores its own with transport=);
            # Identity retries transient answers within the deadline, so the SDK does not.
            transport=http.transport(workflow.environ, timeouts),
            retry_total=0,
        )
        description = (
            f"GitHub OIDC -> Entra ID (workload identity federation): tenant "
            f"{settings.tenant_id}, client {settings.client_id}, audience "
            f"{settings.audience}; a fresh GitHub token for every Entra request"
        )
        return Identity(
            credential,
            description,
            settings.tenant_id,
            settings.client_id,
            workflow,
            assertion,
            timeouts=timeouts,
            authority=authority,
        )

    from azure.identity import DefaultAzureCredential

    default = DefaultAzureCredential(authority=settings.cloud.authority_host)
    who = ", ".join(
        f"{k} {v}" for k, v in (("tenant", settings.tenant_id), ("client", settings.client_id)) if v
    )
    description = (
        "DefaultAzureCredential (outside GitHub Actions: environment, workload "
        "identity, managed identity, az login, azd, PowerShell)" + (f": {who}" if who else "")
    )
    return Identity(
        default,
        description,
        settings.tenant_id,
        settings.client_id,
        workflow,
        timeouts=timeouts,
        authority=authority,
    )

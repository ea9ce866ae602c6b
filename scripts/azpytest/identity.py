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
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.credentials import (
    AccessToken,
    AccessTokenInfo,
    TokenCredential,
    TokenRequestOptions,
)
from azure.core.exceptions import ClientAuthenticationError
from urllib3.util.retry import Retry

from azpytest import errors, http
from azpytest.github import Workflow
from azpytest.settings import Settings

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


class GitHubAssertion:
    """The `func` of ClientAssertionCredential: a fresh GitHub OIDC token on every call."""

    def __init__(self, workflow: Workflow, audience: str) -> None:
        self.workflow = workflow
        self.audience = audience
        self.claims: dict[str, Any] = {}
        self.requests = 0
        retry = Retry(
            total=3,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("GET",),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._session = http.session(workflow.environ, retry=retry)

    def __call__(self) -> str:
        environ = self.workflow.environ
        url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        request_token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not url or not request_token:
            raise errors.no_oidc_request(environ)
        separator = "&" if "?" in url else "?"
        full = f"{url}{separator}audience={urllib.parse.quote(self.audience, safe='')}"
        host = urllib.parse.urlsplit(url).hostname or url
        try:
            answer = self._session.get(
                full, headers={"Authorization": f"Bearer {request_token}"}, timeout=(10, 30)
            )
        except requests.RequestException as exc:
            raise errors.unreachable(host, str(exc), environ) from None
        if answer.status_code != 200:
            raise errors.oidc_request_failed(answer.status_code, host)
        try:
            token = str(answer.json()["value"])
        except (ValueError, KeyError, TypeError):
            raise errors.oidc_request_failed(answer.status_code, host) from None
        self.workflow.mask(token)
        self.requests += 1
        claims = unverified_claims(token)
        self.claims = {k: claims[k] for k in DIAGNOSTIC_CLAIMS if k in claims}
        return token


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

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        options = {"tenant_id": tenant_id, "enable_cae": enable_cae}
        with self._lock(scopes, options):
            try:
                token = self.credential.get_token(
                    *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
                )
            except ClientAuthenticationError as exc:
                raise self.diagnose(exc) from None
        self._seen(token.token)
        return token

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        opts: Mapping[str, Any] = options or {}
        with self._lock(scopes, opts):
            try:
                if hasattr(self.credential, "get_token_info"):
                    info: AccessTokenInfo = self.credential.get_token_info(*scopes, options=options)
                else:
                    token = self.credential.get_token(*scopes, **dict(opts))
                    info = AccessTokenInfo(token.token, token.expires_on)
            except ClientAuthenticationError as exc:
                raise self.diagnose(exc) from None
        self._seen(info.token)
        return info

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


def _transport(workflow: Workflow) -> Any:
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(session=http.session(workflow.environ), session_owner=True)


def build(settings: Settings, workflow: Workflow) -> Identity:
    """The explicit choice: GitHub OIDC inside Actions, DefaultAzureCredential outside."""
    if settings.in_actions:
        from azure.identity import ClientAssertionCredential

        assert settings.tenant_id and settings.client_id  # settings requires both in Actions
        assertion = GitHubAssertion(workflow, settings.audience)
        credential = ClientAssertionCredential(
            settings.tenant_id,
            settings.client_id,
            assertion,
            authority=settings.cloud.authority_host,
            transport=_transport(workflow),
        )
        description = (
            f"GitHub OIDC -> Entra ID (workload identity federation): tenant "
            f"{settings.tenant_id}, client {settings.client_id}, audience "
            f"{settings.audience}; a fresh GitHub token for every Entra request"
        )
        return Identity(
            credential, description, settings.tenant_id, settings.client_id, workflow, assertion
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
    return Identity(default, description, settings.tenant_id, settings.client_id, workflow)

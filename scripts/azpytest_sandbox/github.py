"""GitHub Actions' OIDC token endpoint and the issuer's discovery documents."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from .httpd import Request, Response
from .scenario import GITHUB_ISSUER, Scenario
from .tokens import SigningKey, now, token_id

ISSUER_HOST = "token.actions.githubusercontent.com"
# Where the runner's token request goes; the path is the shape the runner's URL has.
TOKEN_PATH_PREFIX = "/_apis/distributedtask/hubs/Actions/plans/"


class GitHubOIDC:
    """`ACTIONS_ID_TOKEN_REQUEST_URL` on loopback, and the issuer's JWKS behind the proxy."""

    name = "github"

    def __init__(self, scenario: Scenario, key: SigningKey, request_token: str) -> None:
        self.scenario = scenario
        self.key = key
        self.request_token = request_token
        plan, job = uuid.uuid4(), uuid.uuid4()
        self.token_path = f"{TOKEN_PATH_PREFIX}{plan}/jobs/{job}/idtoken"

    def serves(self, host: str) -> bool:
        return host in (ISSUER_HOST, "127.0.0.1", "localhost")

    def request_url(self, port: int) -> str:
        return f"https://127.0.0.1:{port}{self.token_path}?api-version=2.0"

    def claims(
        self, audience: str, lifetime_s: int | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The claim set GitHub puts in a job's OIDC token (overrides replace any claim)."""
        gh = self.scenario.github
        issued = now() + gh.clock_skew_s
        lifetime = gh.token_lifetime_s if lifetime_s is None else lifetime_s
        ref_type = "tag" if gh.ref.startswith("refs/tags/") else "branch"
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "sub": gh.subject,
            "aud": audience,
            "ref": gh.ref,
            "sha": gh.sha,
            "repository": gh.repository,
            "repository_owner": gh.owner,
            "repository_owner_id": gh.repository_owner_id,
            "run_id": gh.run_id,
            "run_number": gh.run_number,
            "run_attempt": gh.run_attempt,
            "repository_visibility": "private",
            "repository_id": gh.repository_id,
            "actor_id": "583231",
            "actor": gh.actor,
            "workflow": gh.workflow_file.rsplit(".", 1)[0],
            "head_ref": "",
            "base_ref": "",
            "event_name": gh.event_name,
            "ref_protected": "false",
            "ref_type": ref_type,
            "workflow_ref": gh.workflow_ref,
            "workflow_sha": gh.sha,
            "job_workflow_ref": gh.job_workflow_ref or gh.workflow_ref,
            "job_workflow_sha": gh.sha,
            "runner_environment": "github-hosted",
            "iss": GITHUB_ISSUER,
            "nbf": issued,
            "exp": issued + lifetime,
            "iat": issued,
        }
        if gh.environment:
            claims["environment"] = gh.environment
        claims.update(overrides)
        return claims

    def issue(
        self,
        audience: str = "api://AzureADTokenExchange",
        lifetime_s: int | None = None,
        **overrides: Any,
    ) -> str:
        return self.key.sign(self.claims(audience, lifetime_s, **overrides))

    def handle(self, request: Request) -> Response:
        if request.host == ISSUER_HOST:
            return self._discovery(request)
        if request.path != self.token_path or request.method != "GET":
            return Response.json(404, {"message": "Not Found"})
        supplied = request.bearer or ""
        if not hmac.compare_digest(supplied.encode(), self.request_token.encode()):
            request.who = "bad-request-token"
            return Response.json(
                401,
                {
                    "$id": "1",
                    "innerException": None,
                    "message": "Invalid or expired runtime token.",
                    "typeName": "Microsoft.VisualStudio.Services.WebApi.VssUnauthorizedException",
                    "errorCode": 0,
                    "eventId": 3000,
                },
            )
        audience = (
            request.query.get("audience") or f"https://github.com/{self.scenario.github.owner}"
        )
        request.who = f"github:{self.scenario.github.repository}"
        return Response.json(200, {"count": 1, "value": self.issue(audience)})

    def _discovery(self, request: Request) -> Response:
        if request.path == "/.well-known/openid-configuration":
            return Response.json(
                200,
                {
                    "issuer": GITHUB_ISSUER,
                    "jwks_uri": f"{GITHUB_ISSUER}/.well-known/jwks",
                    "subject_types_supported": ["public", "pairwise"],
                    "response_types_supported": ["id_token"],
                    "claims_supported": [
                        "sub",
                        "aud",
                        "exp",
                        "iat",
                        "iss",
                        "jti",
                        "nbf",
                        "ref",
                        "repository",
                        "repository_id",
                        "repository_owner",
                        "repository_owner_id",
                        "run_id",
                        "run_number",
                        "run_attempt",
                        "actor",
                        "workflow",
                        "workflow_ref",
                        "job_workflow_ref",
                        "event_name",
                        "environment",
                        "ref_type",
                    ],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid"],
                },
            )
        if request.path == "/.well-known/jwks":
            return Response.json(200, {"keys": [self.key.jwk()]})
        return Response.json(404, {"message": "Not Found"})

    def fault_response(self, status: int) -> Response:
        return Response.json(status, {"message": f"sandbox fault: HTTP {status}", "id": token_id()})

"""Unmodified azure-identity credentials get tokens from the sandbox's Entra ID through the proxy,
and each AADSTS refusal comes from a real mismatch in the scenario."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ClientSecretCredential, DefaultAzureCredential

from azpytest_sandbox import Sandbox

VAULT_SCOPE = "https://vault.azure.net/.default"
AUDIENCE = "api://AzureADTokenExchange"


def github_token(audience: str = AUDIENCE) -> str:
    """What the product does inside a job: ask the runner's OIDC endpoint."""
    url = (
        os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"]
        + "&audience="
        + urllib.parse.quote(audience, safe="")
    )
    answer = requests.get(
        url,
        headers={"Authorization": "Bearer " + os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["value"])


def assertion_credential(
    func: Callable[[], str] = github_token, **kwargs: object
) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], func, **kwargs
    )


def test_github_token_has_the_real_claim_set(sandbox_env: Sandbox) -> None:
    token = github_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://token.actions.githubusercontent.com"
    assert claims["sub"] == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 300
    assert (
        claims["job_workflow_ref"] == "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main"
    )
    for claim in (
        "workflow_ref",
        "ref",
        "repository",
        "repository_id",
        "repository_owner",
        "repository_owner_id",
        "run_id",
        "run_attempt",
        "event_name",
        "nbf",
    ):
        assert claims[claim], claim
    # The token verifies against the issuer's published JWKS, fetched through the proxy.
    jwks = requests.get(
        "https://token.actions.githubusercontent.com/.well-known/jwks", timeout=10
    ).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    assert jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE)["sub"] == claims["sub"]


@pytest.mark.parametrize(
    ("github", "subject"),
    [
        ({"environment": "prod"}, "repo:octo-org/octo-repo:environment:prod"),
        (
            {"event_name": "pull_request", "ref": "refs/pull/7/merge"},
            "repo:octo-org/octo-repo:pull_request",
        ),
        ({"ref": "refs/tags/v1.2.0"}, "repo:octo-org/octo-repo:ref:refs/tags/v1.2.0"),
        ({"immutable_subject": True}, "repo:octo-org@9919/octo-repo@690123456:ref:refs/heads/main"),
    ],
)
def test_subject_forms(
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[[Sandbox], Sandbox],
    github: dict[str, object],
    subject: str,
) -> None:
    use_sandbox(make_sandbox({"github": github}))
    claims = jwt.decode(github_token(), options={"verify_signature": False})
    assert claims["sub"] == subject


def test_wrong_request_token_gets_401(sandbox_env: Sandbox) -> None:
    answer = requests.get(
        os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"],
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert answer.status_code == 401


def test_client_assertion_credential_gets_a_vault_token(sandbox_env: Sandbox) -> None:
    token = assertion_credential().get_token(VAULT_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    app = sandbox_env.scenario.default_app
    assert app is not None
    assert (claims["aud"], claims["tid"], claims["oid"], claims["appid"]) == (
        "https://vault.azure.net",
        app.tenant_id,
        app.object_id,
        app.client_id,
    )
    assert 3598 <= token.expires_on - claims["iat"] <= 3600  # dated from the request, before Entra
    entra_calls = sandbox_env.log.select(service="entra")
    assert [(c.method, c.path, c.status) for c in entra_calls] == [
        ("POST", f"/{app.tenant_id}/oauth2/v2.0/token", 200)
    ]


def test_client_secret_and_environment_credentials(
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[[Sandbox], Sandbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = use_sandbox(
        make_sandbox(
            {
                "tenants": [
                    {
                        "id": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
                        "name": "contoso",
                        "apps": [
                            {
                                "name": "laptop",
                                "client_id": "11111111-2222-4333-8444-555555555555",
                                "secrets": ["correct-horse"],
                            }
                        ],
                    }
                ]
            }
        )
    )
    tenant = sandbox.scenario.tenants[0].id
    client = "11111111-2222-4333-8444-555555555555"
    assert ClientSecretCredential(tenant, client, "correct-horse").get_token(VAULT_SCOPE).token
    with pytest.raises(
        ClientAuthenticationError, match="AADSTS7000215: Invalid client secret provided"
    ):
        ClientSecretCredential(tenant, client, "wrong").get_token(VAULT_SCOPE)
    monkeypatch.setenv("AZURE_CLIENT_ID", client)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "correct-horse")
    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    token = credential.get_token("https://management.azure.com/.default")
    assert (
        jwt.decode(token.token, options={"verify_signature": False})["aud"]
        == "https://management.azure.com"
    )
    # MSAL's discovery calls were served too.
    paths = {e.path for e in sandbox.log.select(service="entra", method="GET")}
    assert f"/{tenant}/v2.0/.well-known/openid-configuration" in paths


def federated(subject: str, audience: str = AUDIENCE) -> dict[str, object]:
    return {
        "tenants": [
            {
                "id": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
                "name": "contoso",
                "apps": [
                    {
                        "name": "azpytest-ci",
                        "client_id": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
                        "federated_credentials": [{"subject": subject, "audience": audience}],
                    }
                ],
            }
        ]
    }


def test_wrong_subject_is_aadsts70021_naming_the_assertion(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    use_sandbox(make_sandbox(federated("repo:octo-org/octo-repo:environment:prod")))
    with pytest.raises(ClientAuthenticationError) as caught:
        assertion_credential().get_token(VAULT_SCOPE)
    message = str(caught.value)
    assert (
        "AADSTS70021: No matching federated identity record found for presented assertion."
        in message
    )
    assert "Assertion Issuer: 'https://token.actions.githubusercontent.com'" in message
    assert "Assertion Subject: 'repo:octo-org/octo-repo:ref:refs/heads/main'" in message
    assert "Assertion Audience: 'api://AzureADTokenExchange'" in message


def test_wrong_audience_is_aadsts70021(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    use_sandbox(
        make_sandbox(federated("repo:octo-org/octo-repo:ref:refs/heads/main", "api://Other"))
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS70021"):
        assertion_credential().get_token(VAULT_SCOPE)


def test_subject_differing_in_case_is_aadsts7002138(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    use_sandbox(make_sandbox(federated("repo:Octo-Org/octo-repo:ref:refs/heads/main")))
    with pytest.raises(ClientAuthenticationError, match=r"AADSTS7002138: .*case-sensitive"):
        assertion_credential().get_token(VAULT_SCOPE)


def test_expired_assertion_is_aadsts700024(sandbox_env: Sandbox) -> None:
    expired = sandbox_env.github.issue(
        lifetime_s=300, iat=1_700_000_000, nbf=1_700_000_000, exp=1_700_000_300
    )
    with pytest.raises(
        ClientAuthenticationError,
        match="AADSTS700024: Client assertion is not within its valid time range",
    ):
        assertion_credential(lambda: expired).get_token(VAULT_SCOPE)


def test_unknown_client_id_is_aadsts700016(sandbox_env: Sandbox) -> None:
    credential = ClientAssertionCredential(
        os.environ["AZURE_TENANT_ID"], "99999999-9999-4999-8999-999999999999", github_token
    )
    with pytest.raises(
        ClientAuthenticationError,
        match="AADSTS700016: Application with identifier '99999999-9999-4999-8999-999999999999' "
        "was not found in the directory",
    ):
        credential.get_token(VAULT_SCOPE)


def test_assertion_signed_by_another_key_is_refused(sandbox_env: Sandbox) -> None:
    from azpytest_sandbox.tokens import SigningKey

    forged = SigningKey.generate().sign(sandbox_env.github.claims(AUDIENCE))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        assertion_credential(lambda: forged).get_token(VAULT_SCOPE)


def test_429_with_retry_after_is_retried_then_succeeds(sandbox_env: Sandbox) -> None:
    sandbox_env.add_fault(service="entra", path="*/token", status=429, times=2, retry_after=0.05)
    assert assertion_credential().get_token(VAULT_SCOPE).token
    statuses = [e.status for e in sandbox_env.log.select(service="entra", method="POST")]
    assert statuses == [429, 429, 200]


def test_persistent_503_fails(sandbox_env: Sandbox) -> None:
    sandbox_env.add_fault(service="entra", path="*/token", status=503, retry_after=0.05)
    with pytest.raises(ClientAuthenticationError):
        assertion_credential().get_token(VAULT_SCOPE)
    assert len(sandbox_env.log.select(service="entra", method="POST")) == 4  # 1 try + 3 retries


def test_token_lifetime_is_configurable(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    use_sandbox(make_sandbox({"token_lifetime_s": 5}))
    token = assertion_credential().get_token(VAULT_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 5

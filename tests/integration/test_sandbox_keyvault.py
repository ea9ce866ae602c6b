"""The unmodified SecretClient, with default settings, reads the sandbox's Key Vault
through the proxy."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.identity import ClientAssertionCredential
from azure.keyvault.secrets import SecretClient

from azpytest_sandbox import Sandbox

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CI_APP = {
    "name": "azpytest-ci",
    "client_id": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
    "object_id": "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e",
    "federated_credentials": [{"subject": "repo:octo-org/octo-repo:ref:refs/heads/main"}],
}


def client(sandbox: Sandbox, vault: str = "kv-azpytest") -> SecretClient:
    credential = ClientAssertionCredential(
        os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], lambda: sandbox.github.issue()
    )
    return SecretClient(f"https://{vault}.vault.azure.net", credential)


def world(secrets: dict[str, Any], grants: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "vaults": [
            {
                "name": "kv-test",
                "secrets": secrets,
                "grants": [{"principal": "azpytest-ci"}] if grants is None else grants,
            }
        ]
    }


def test_get_latest_and_by_version(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    sandbox = use_sandbox(
        make_sandbox(
            world(
                {
                    "db-password": {
                        "versions": [{"value": "old"}],
                        "value": "new",
                        "content_type": "text/plain",
                        "tags": {"owner": "data"},
                    },
                }
            )
        )
    )
    kv = client(sandbox, "kv-test")
    secret = kv.get_secret("db-password")
    assert (secret.value, secret.properties.content_type, secret.properties.tags) == (
        "new",
        "text/plain",
        {"owner": "data"},
    )
    versions = list(kv.list_properties_of_secret_versions("db-password"))
    assert len(versions) == 2
    older = next(v for v in versions if v.version != secret.properties.version)
    assert kv.get_secret("db-password", older.version).value == "old"
    # The first request was the unauthenticated one that earns the 401 challenge.
    first = sandbox.log.select(service="keyvault")[0]
    assert (first.status, first.who) == (401, "anonymous")


def test_list_pages_through_next_link(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    sandbox = use_sandbox(make_sandbox(world({f"s-{i:02d}": f"v{i}" for i in range(60)})))
    names = [p.name for p in client(sandbox, "kv-test").list_properties_of_secrets()]
    assert names == [f"s-{i:02d}" for i in range(60)]
    pages = [
        e for e in sandbox.log.select(service="keyvault", path_prefix="/secrets") if e.status == 200
    ]
    assert len(pages) == 3  # 25 + 25 + 10


def test_multiline_and_unicode_values_round_trip(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    pem = "-----BEGIN KEY-----\nabc\ndef\n-----END KEY-----"
    sandbox = use_sandbox(make_sandbox(world({"pem": pem, "greeting": "grüße 🌍"})))
    kv = client(sandbox, "kv-test")
    assert kv.get_secret("pem").value == pem
    assert kv.get_secret("greeting").value == "grüße 🌍"


def test_missing_secret_is_404_secret_not_found(sandbox_env: Sandbox) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client(sandbox_env).get_secret("no-such-secret")
    assert caught.value.error is not None
    assert caught.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) no-such-secret was not found in this key vault" in str(
        caught.value
    )


def test_disabled_secret_is_forbidden_and_expired_one_is_served(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    sandbox = use_sandbox(
        make_sandbox(
            world(
                {
                    "off": {"value": "x", "enabled": False},
                    "old": {"value": "y", "expires": "2020-01-01T00:00:00Z"},
                }
            )
        )
    )
    kv = client(sandbox, "kv-test")
    with pytest.raises(
        HttpResponseError, match="Operation get is not allowed on a disabled secret"
    ):
        kv.get_secret("off")
    old = kv.get_secret("old")
    assert old.value == "y"
    assert old.properties.expires_on is not None and old.properties.expires_on.year == 2020
    listed = {p.name: p.enabled for p in kv.list_properties_of_secrets()}
    assert listed == {"off": False, "old": True}


def test_rbac_secret_scoped_grant(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    sandbox = use_sandbox(
        make_sandbox(
            world(
                {"mine": "a", "theirs": "b"}, grants=[{"principal": "azpytest-ci", "scope": "mine"}]
            )
        )
    )
    kv = client(sandbox, "kv-test")
    assert kv.get_secret("mine").value == "a"
    with pytest.raises(HttpResponseError) as caught:
        kv.get_secret("theirs")
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "Forbidden"
    assert "ForbiddenByRbac" in str(caught.value)
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'" in str(caught.value)
    assert f"oid={CI_APP['object_id']}" in str(caught.value)
    with pytest.raises(HttpResponseError, match="readMetadata/action"):
        list(kv.list_properties_of_secrets())


def test_token_of_another_tenant_is_refused(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox]
) -> None:
    other = "0badc0de-0000-4000-8000-000000000000"
    sandbox = use_sandbox(
        make_sandbox(
            {
                "tenants": [
                    {"id": TENANT, "name": "contoso", "apps": [CI_APP]},
                    {"id": other, "name": "fabrikam", "apps": []},
                ],
                "vaults": [
                    {
                        "name": "kv-fabrikam",
                        "tenant": other,
                        "secrets": {"a": "b"},
                        "grants": [{"principal": "azpytest-ci"}],
                    }
                ],
            }
        )
    )
    # The challenge names the vault's tenant; the SDK will not go there unless allowed...
    with pytest.raises(
        ClientAuthenticationError, match=f"not configured to acquire tokens for tenant {other}"
    ):
        client(sandbox, "kv-fabrikam").get_secret("a")
    # ...and when allowed, Entra finds no such app in that tenant.
    credential = ClientAssertionCredential(
        TENANT,
        str(CI_APP["client_id"]),
        lambda: sandbox.github.issue(),
        additionally_allowed_tenants=["*"],
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        SecretClient("https://kv-fabrikam.vault.azure.net", credential).get_secret("a")


def test_unknown_vault_fails_at_the_proxy(sandbox_env: Sandbox) -> None:
    kv = SecretClient(
        "https://kv-nowhere.vault.azure.net",
        ClientAssertionCredential(
            TENANT, str(CI_APP["client_id"]), lambda: sandbox_env.github.issue()
        ),
        retry_total=0,
    )
    with pytest.raises(ServiceRequestError):
        kv.get_secret("a")


def test_429_then_success_and_persistent_503(sandbox_env: Sandbox) -> None:
    kv = client(sandbox_env)
    sandbox_env.add_fault(
        service="keyvault", path="/secrets/pg-host*", status=429, times=1, retry_after=0
    )
    assert kv.get_secret("pg-host").value == "127.0.0.1"
    sandbox_env.add_fault(
        service="keyvault", path="/secrets/pg-user*", status=503, retry_after=0.05
    )
    with pytest.raises(HttpResponseError) as caught:
        kv.get_secret("pg-user")
    assert caught.value.status_code == 503
    assert all(
        e.status == 503
        for e in sandbox_env.log.select(service="keyvault", path_prefix="/secrets/pg-user")
    )


def test_request_log_holds_no_secret_or_token(sandbox_env: Sandbox, tmp_path: Any) -> None:
    kv = client(sandbox_env)
    value = kv.get_secret("pg-password").value
    assert value
    logged = repr([e.as_dict() for e in sandbox_env.log])
    assert value not in logged
    assert "eyJ" not in logged  # no JWT of any kind

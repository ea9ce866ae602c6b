"""errors.py's diagnoses: each branch of each factory names its failure with its own kind,
a stable kebab-case word the audit log and the troubleshooting section key on."""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azpytest import errors

KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

ENTRA = {"tenant_id": "t-1", "client_id": "c-1", "claims": None, "audience": "api://X"}
AKS_404 = {"subscription": "s-1", "resource_group": "rg", "cluster": "aks", "arm_said": "no"}
ARM = {
    "code": "",
    "arm_said": "said",
    "action": "listClusterUserCredential",
    "cluster": "aks",
    "tenant_id": "t-1",
    "correlation_id": "x-1",
}


SQL_CLAIMS = {
    "appid": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
    "oid": "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e",
    "app_displayname": "azpytest-ci",
    "aud": "https://database.windows.net/",
    "exp": 1700000000,
}


def _cases(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """One call per branch that has a kind of its own: (factory, keyword arguments)."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"repo": {"fork": True}}}}))
    fork = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    return [
        ("no_oidc_request", {"environ": {}}),
        ("no_oidc_request", {"environ": fork}),
        ("oidc_request_failed", {"status": 403, "host": "token.example"}),
        ("entra_refused", {"message": "AADSTS70021: No matching federated identity", **ENTRA}),
        ("entra_refused", {"message": "AADSTS700016: Application not found", **ENTRA}),
        ("entra_refused", {"message": "AADSTS700024: Client assertion expired", **ENTRA}),
        ("entra_refused", {"message": "AADSTS50000: something else", **ENTRA}),
        ("local_credential_failed", {"message": "EnvironmentCredential: not configured"}),
        ("no_kubelet_identity", {"cluster": "aks-1"}),
        ("sql_unknown_driver", {"wanted": "odbc", "drivers": ["mssql-python", "pyodbc"]}),
        (
            "sql_not_a_user",
            {"host": "sql-1.database.windows.net", "database": "app", "claims": SQL_CLAIMS},
        ),
        (
            "sql_firewall",
            {"host": "sql-1.database.windows.net", "address": "20.1.2.3", "server": "sql-1"},
        ),
        (
            "sql_token_refused",
            {
                "host": "sql-1.database.windows.net",
                "asked": "https://database.windows.net/.default",
                "expected": "https://database.usgovcloudapi.net/",
                "claims": SQL_CLAIMS,
            },
        ),
        ("sql_token_expired", {"host": "sql-1.database.windows.net", "claims": SQL_CLAIMS}),
        ("sql_database_unavailable", {"host": "sql-1.database.windows.net", "database": "app"}),
        (
            "sql_certificate_untrusted",
            {"host": "sql-1.database.windows.net", "reason": "unknown CA", "ca_file": None},
        ),
        (
            "vault_failed",
            {"vault": "kv", "secret": "db", "status": 500, "message": "Internal error"},
        ),
        (
            "vault_forbidden",
            {
                "vault": "kv",
                "secret": "db",
                "client_id": "c-1",
                "object_id": "o-1",
                "action": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "resource": None,
            },
        ),
        ("secret_not_found", {"vault": "kv", "secret": "db", "close": ["db1"]}),
        ("secret_unusable", {"vault": "kv", "secret": "db", "state": "disabled"}),
        (
            "profiles_secret_not_found",
            {
                "diagnosis": errors.secret_not_found(vault="kv", secret="db", close=["db1"]),
                "vault": "kv",
                "secret": "db",
                "where": "connections.warehouse.host",
            },
        ),
        ("unreachable", {"host": "login.example", "error": "timed out", "environ": {}}),
        (
            "aks_forbidden",
            {
                "cluster": "aks",
                "cluster_id": "/subscriptions/s-1/x",
                "action": "listClusterUserCredential/action",
                "admin": False,
                "client_id": "c-1",
                "object_id": "o-1",
                "arm_said": "AuthorizationFailed",
            },
        ),
        ("aks_not_found", {"code": "SubscriptionNotFound", **AKS_404}),
        ("aks_not_found", {"code": "ResourceGroupNotFound", **AKS_404}),
        ("aks_not_found", {"code": "ResourceNotFound", **AKS_404}),
        ("arm_failed", {"status": 401, **ARM}),
        ("arm_failed", {"status": 503, **ARM}),
        ("arm_failed", {"status": 400, **ARM}),
        ("kubeconfig_unreadable", {"cluster": "aks", "problem": errors.KUBECONFIG_NOT_YAML}),
        *(
            ("service_unavailable", {"service": service, "host": "h.example", "said": "HTTP 503"})
            for service in (
                errors.GITHUB_OIDC,
                errors.ENTRA,
                errors.KEY_VAULT,
                errors.ARM,
                errors.AKS_API,
            )
        ),
    ]


def _factories() -> dict[str, Callable[..., errors.Diagnosis]]:
    """errors.py's public functions whose declared return type is Diagnosis."""
    return {
        name: function
        for name, function in inspect.getmembers(errors, inspect.isfunction)
        if function.__module__ == errors.__name__
        and not name.startswith("_")
        and typing.get_type_hints(function).get("return") is errors.Diagnosis
    }


def test_every_diagnosis_factory_is_called_here(tmp_path: Path) -> None:
    called = {name for name, _ in _cases(tmp_path)}
    missing = sorted(set(_factories()) - called)
    assert not missing, f"add a case for each branch of {', '.join(missing)} to _cases"


def test_each_branch_of_each_factory_sets_its_own_kebab_case_kind(tmp_path: Path) -> None:
    factories = _factories()
    seen: dict[str, str] = {}
    for name, kwargs in _cases(tmp_path):
        diagnosis = factories[name](**kwargs)
        assert isinstance(diagnosis, errors.Diagnosis)
        assert KEBAB.fullmatch(diagnosis.kind), f"{name}: kind {diagnosis.kind!r}"
        assert diagnosis.kind not in seen, (
            f"{name} and {seen[diagnosis.kind]} both set kind {diagnosis.kind!r}"
        )
        seen[diagnosis.kind] = name
        assert diagnosis.what and diagnosis.cause and diagnosis.fix, name


PROXIED = {"HTTPS_PROXY": "http://user:pw@proxy.corp:3128", "NO_PROXY": "127.0.0.1,.corp.example"}


def test_a_diagnosis_says_the_route_no_proxy_honoured() -> None:
    """A reset on a host NO_PROXY sends direct is not blamed on the proxy (issue 14)."""
    direct = errors.unreachable("127.0.0.1", "reset", PROXIED)
    assert direct.what == "Could not reach 127.0.0.1 directly (NO_PROXY names it)."
    inner = errors.service_unavailable(
        service=errors.KEY_VAULT, host="kv.corp.example", said="HTTP 503", environ=PROXIED
    )
    assert ("route", "directly (NO_PROXY names it)") in inner.details
    outer = errors.unreachable("kv-app.vault.azure.net", "reset", PROXIED)
    assert outer.what == (
        "Could not reach kv-app.vault.azure.net through the proxy http://proxy.corp:3128 "
        "(HTTPS_PROXY)."
    )
    assert errors.unreachable("kv-app.vault.azure.net", "reset", {}).what == (
        "Could not reach kv-app.vault.azure.net directly (no HTTPS_PROXY set)."
    )

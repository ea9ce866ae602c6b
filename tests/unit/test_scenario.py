"""Scenario files: what they describe, and the one-line errors a broken one earns."""

from __future__ import annotations

from pathlib import Path

import pytest

from azpytest_sandbox.scenario import ScenarioError, build_scenario, load_scenario


def test_default_world() -> None:
    scenario = build_scenario({})
    app = scenario.default_app
    assert app is not None and app.name == "azpytest-ci"
    assert scenario.github.subject == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert app.federated_credentials[0].subject == scenario.github.subject
    assert set(scenario.vaults["kv-azpytest"].secrets) == {
        "pg-host",
        "pg-database",
        "pg-user",
        "pg-password",
    }


def test_secret_versions_and_attributes() -> None:
    scenario = build_scenario(
        {
            "vaults": [
                {
                    "name": "kv-one",
                    "secrets": {
                        "a": {
                            "versions": [{"value": "v1", "enabled": False}],
                            "value": "v2",
                            "expires": "2030-01-01T00:00:00Z",
                            "tags": {"k": 1},
                        },
                    },
                }
            ]
        }
    )
    secret = scenario.vaults["kv-one"].secrets["a"]
    assert [v.value for v in secret.versions] == ["v1", "v2"]
    assert secret.current.expires is not None and secret.current.expires.year == 2030
    assert secret.current.tags == {"k": "1"}
    assert not secret.versions[0].enabled
    assert len({v.version for v in secret.versions}) == 2


def test_yaml_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "world.yaml"
    path.write_text("github:\n  environment: prod\ntoken_lifetime_s: 5\n")
    scenario = load_scenario(path)
    assert scenario.github.subject == "repo:octo-org/octo-repo:environment:prod"
    assert scenario.token_lifetime_s == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "the scenario must be a mapping, not a list"),
        (
            {"vault": []},
            "the scenario: unknown key 'vault' (known: faults, github, sql_servers, "
            "subscriptions, tenants, token_lifetime_s, vaults)",
        ),
        ({"tenants": [{"id": "not-a-guid"}]}, "tenants[0].id: 'not-a-guid' is not a GUID"),
        ({"tenants": []}, "tenants: at least one tenant is needed"),
        ({"github": {"ref": "main"}}, "github.ref: 'main' must start with refs/ (refs/heads/main)"),
        (
            {"vaults": [{"name": "kv-one", "secrets": {"bad_name": "x"}}]},
            "vaults[0].secrets: 'bad_name' is not a Key Vault secret name",
        ),
        (
            {"vaults": [{"name": "kv-one", "tenant": "nope"}]},
            "vaults[0].tenant: no tenant 'nope' in tenants",
        ),
        (
            {"faults": [{"service": "dns"}]},
            "faults[0].service: 'dns' is not one of github, entra, keyvault, arm, kube, ldap, sql",
        ),
        (
            {"faults": [{"status": 999}]},
            "faults[0].status: expected an HTTP status (100-599), got 999",
        ),
        ({"token_lifetime_s": 0}, "token_lifetime_s: expected a whole number ≥ 1"),
        (
            {"faults": [{"status": 503, "for_s": 0}]},
            "faults[0].for_s: expected seconds (more than 0), got 0",
        ),
        ({"faults": [{"reset": "yes"}]}, "faults[0].reset: expected true or false, got 'yes'"),
    ],
)
def test_invalid_scenarios_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        build_scenario(data)
    assert str(caught.value) == message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("vaults:\n  - name: [x\n")
    with pytest.raises(ScenarioError, match=rf"^{path}: .* at line 3, column 1$"):
        load_scenario(path)


def test_a_fault_answers_its_times_or_for_its_seconds() -> None:
    from azpytest_sandbox.httpd import FaultBook

    scenario = build_scenario(
        {
            "faults": [
                {"service": "keyvault", "reset": True, "times": 1},
                {"service": "entra", "status": 503, "for_s": 5},
                {"service": "github", "truncated": True},
            ]
        }
    )
    book = FaultBook(scenario.faults)
    reset, outage, truncated = scenario.faults
    assert book.pick("keyvault", "GET", "kv.vault.azure.net", "/secrets/x") == (0, reset)
    assert book.pick("keyvault", "GET", "kv.vault.azure.net", "/secrets/x") == (0, None)
    assert book.pick("github", "GET", "127.0.0.1", "/idtoken") == (0, truncated)
    assert book.pick("github", "GET", "127.0.0.1", "/idtoken") == (0, truncated)
    assert book.pick("entra", "POST", "login.microsoftonline.com", "/t/token") == (0, outage)
    assert outage.first_hit is not None
    assert outage.in_force(outage.first_hit + 4.9)
    assert not outage.in_force(outage.first_hit + 5)

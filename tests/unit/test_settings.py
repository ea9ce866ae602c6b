"""Inputs: precedence, .env, and the one-line errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azpytest.inputs import InputError, SecretSpec, parse_secrets
from azpytest.rundir import RunDir
from azpytest.settings import latest_link, load, read_dotenv
from azpytest.steps import cleanup

T = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
C = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
C2 = "11111111-2222-4333-8444-555555555555"


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_flag_beats_environment_beats_dotenv_beats_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"AZURE_TENANT_ID={T}\nAZURE_CLIENT_ID={C2}\nAZPYTEST_CLOUD=AzureChinaCloud\n"
    )
    settings = load(
        {"client-id": C}, {"AZURE_CLIENT_ID": C2.replace("1", "3"), "AZPYTEST_AUDIENCE": "api://x"}
    )
    assert settings.client_id == C  # flag
    assert settings.audience == "api://x"  # environment
    assert settings.tenant_id == T  # .env
    assert settings.cloud.name == "AzureChinaCloud"  # .env over the default
    assert settings.cloud.vault_suffix == ".vault.azure.cn"
    assert settings.env_file == Path(".env")
    assert settings.notes == ()


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"AZURE_CLIENT_ID={C2}\n")
    assert load({}, {"AZURE_CLIENT_ID": C}).client_id == C


def test_missing_dotenv_is_a_note_locally_but_not_in_actions() -> None:
    assert load({}, {}).notes == ("no .env file here; using the environment only",)
    assert (
        load({}, {"GITHUB_ACTIONS": "true", "AZURE_TENANT_ID": T, "AZURE_CLIENT_ID": C}).notes == ()
    )


def test_incomplete_dotenv_is_a_note(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOMETHING=else\n")
    assert load({}, {}).notes == (
        ".env sets neither AZURE_TENANT_ID nor AZURE_CLIENT_ID; DefaultAzureCredential will pick the identity",
    )


def test_dotenv_syntax(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\nexport A=\"quoted value\"\nB='single'\nC=plain # trailing\n\nD=\n")
    assert read_dotenv(path) == {"A": "quoted value", "B": "single", "C": "plain", "D": ""}
    path.write_text("not a pair\n")
    with pytest.raises(InputError, match=r"line 1 is not KEY=VALUE"):
        read_dotenv(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"cloud": "mars"},
            "cloud: unknown cloud 'mars'; use one of AzureCloud, AzureUSGovernment, AzureChinaCloud",
        ),
        (
            {"client-id": "my-app"},
            "client-id: 'my-app' is not a GUID (the Application (client) ID of the app "
            "registration or managed identity)",
        ),
        (
            {"key-vault": "https://kv.vault.usgovcloudapi.net"},
            "key-vault: 'https://kv.vault.usgovcloudapi.net' is not a AzureCloud vault URL "
            "(https://<name>.vault.azure.net); set cloud if the vault is in another cloud",
        ),
        ({"secrets": "A: b"}, "secrets: set key-vault too: the secrets are read from that vault"),
        (
            {"aks-cluster": "c"},
            "aks-resource-group: set both aks-resource-group and aks-cluster, or neither",
        ),
        (
            {"aks-cluster": "c", "aks-resource-group": "g"},
            "subscription-id: required with aks-cluster: the cluster's subscription (or set AZURE_SUBSCRIPTION_ID)",
        ),
        ({"debug": "maybe"}, "debug: 'maybe' is not true or false"),
        ({"env-file": "nope.env"}, "env-file: nope.env does not exist"),
    ],
)
def test_bad_input(flags: dict[str, str], message: str) -> None:
    with pytest.raises(InputError) as caught:
        load(flags, {})
    assert str(caught.value) == message


def test_vault_name_and_url_normalise() -> None:
    assert load({"key-vault": "KV-App"}, {}).key_vault == "https://kv-app.vault.azure.net"
    assert (
        load({"key-vault": "https://kv-app.vault.azure.net/"}, {}).key_vault
        == "https://kv-app.vault.azure.net"
    )
    gov = load({"key-vault": "kv-app", "cloud": "AzureUSGovernment"}, {})
    assert gov.key_vault == "https://kv-app.vault.usgovcloudapi.net"
    assert gov.cloud.vault_scope == "https://vault.usgovcloudapi.net/.default"
    assert gov.cloud.arm_scope == "https://management.usgovcloudapi.net/.default"


def test_run_dir_is_per_job_and_attempt(tmp_path: Path) -> None:
    settings = load(
        {},
        {
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_RUN_ID": "9",
            "GITHUB_RUN_ATTEMPT": "2",
            "GITHUB_JOB": "integration tests",
            "GITHUB_ACTIONS": "true",
            "AZURE_TENANT_ID": T,
            "AZURE_CLIENT_ID": C,
        },
    )
    assert settings.run_dir == tmp_path / "azpytest" / "9-2-integration_tests"


def test_each_prepare_in_a_job_takes_a_folder_of_its_own(tmp_path: Path) -> None:
    env = {
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_RUN_ID": "9",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_JOB": "test",
        "GITHUB_ACTIONS": "true",
        "AZURE_TENANT_ID": T,
        "AZURE_CLIENT_ID": C,
    }
    first = load({}, env).claim_run_dir(new=True).run_dir
    second = load({}, env).claim_run_dir(new=True).run_dir
    assert first == tmp_path / "azpytest" / "9-2-test"
    assert second == tmp_path / "azpytest" / "9-2-test.2"
    # The steps after a prepare find its folder through AZPYTEST_RUN_DIR and keep it.
    later = load({}, {**env, "AZPYTEST_RUN_DIR": str(second)}).claim_run_dir(new=False)
    assert later.run_dir == second
    assert sorted(p.name for p in (tmp_path / "azpytest").iterdir()) == ["9-2-test", "9-2-test.2"]


def test_on_a_laptop_each_prepare_is_new_and_later_steps_follow_latest(tmp_path: Path) -> None:
    env = {"RUNNER_TEMP": str(tmp_path), "AZURE_TENANT_ID": T, "AZURE_CLIENT_ID": C}
    link = latest_link(env)
    assert link is not None and link.name == f"local-{os.getuid()}-latest"
    first = load({}, env).claim_run_dir(new=True).run_dir
    second = load({}, env).claim_run_dir(new=True).run_dir
    assert first != second and first.parent == second.parent == link.parent
    assert link.resolve() == second.resolve()
    assert load({}, env).claim_run_dir(new=False).run_dir == second.resolve()

    assert cleanup.run(RunDir(second.resolve()), link) == 0
    assert not link.is_symlink()
    # A run after cleanup (no prepare) takes a folder of its own, not the cleaned one.
    alone = load({}, env).claim_run_dir(new=False).run_dir
    assert alone not in (first, second.resolve())
    assert link.resolve() == alone.resolve()


def test_secret_forms() -> None:
    assert parse_secrets("DB_HOST: pg-host\nDB_PASSWORD: pg-password") == (
        SecretSpec("pg-host", "DB_HOST"),
        SecretSpec("pg-password", "DB_PASSWORD"),
    )
    assert parse_secrets("- pg-host\n- 'app-*'\n- TOKEN: api-token") == (
        SecretSpec("pg-host", "PG_HOST"),
        SecretSpec("app-*", None),
        SecretSpec("api-token", "TOKEN"),
    )
    assert parse_secrets("pg-host, pg-user") == (
        SecretSpec("pg-host", "PG_HOST"),
        SecretSpec("pg-user", "PG_USER"),
    )
    assert parse_secrets("- '*'")[0].matches("anything")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "A: pg-*",
            "secrets: A: 'pg-*': a glob takes many secrets; list it (`- pg-*`) instead of mapping it",
        ),
        ("- 'a*b'", "secrets: 'a*b': only a prefix glob is supported (`*` or `prefix-*`)"),
        ("1BAD: x", "secrets: '1BAD' is not an environment variable name"),
        (
            "A: x\nB: y\n- z",
            "secrets: not valid YAML (line 3); write `ENV_NAME: secret-name` lines or a list of "
            "secret names",
        ),
        ("- a-b\n- A_B: c", "secrets: A_B is the target of two secrets"),
        ("42", "secrets: expected a mapping (`ENV_NAME: secret-name`) or a list of secret names"),
    ],
)
def test_bad_secrets(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_secrets(text)
    assert str(caught.value) == message


def test_aks_set_context_names_are_aliases_with_a_note() -> None:
    settings = load(
        {},
        {
            "AZPYTEST_RESOURCE_GROUP": "rg-a",
            "AZPYTEST_CLUSTER_NAME": "aks-a",
            "AZPYTEST_ADMIN": "true",
            "AZURE_SUBSCRIPTION_ID": C,
        },
    )
    assert (settings.aks_resource_group, settings.aks_cluster, settings.aks_admin) == (
        "rg-a",
        "aks-a",
        True,
    )
    assert (
        "resource-group is azure/aks-set-context's name: azpytest calls it aks-resource-group (the old name works)"
        in settings.notes
    )
    assert (
        "cluster-name is azure/aks-set-context's name: azpytest calls it aks-cluster (the old name works)"
        in settings.notes
    )


def test_kubelogin_choice() -> None:
    assert load({}, {}).run.kubelogin == "auto"
    assert load({"kubelogin": "Never"}, {}).run.kubelogin == "never"
    with pytest.raises(
        InputError, match=r"^kubelogin: 'sometimes' is not one of auto, always, never$"
    ):
        load({"kubelogin": "sometimes"}, {})


def test_dotenv_credential_variables_are_withheld_in_ci_only(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AZURE_USERNAME=someone\nAZURE_CLIENT_SECRET=\nAZPYTEST_CLOUD=AzureChinaCloud\n"
        "AZURE_PASSWORD=pw\nAZURE_CLIENT_CERTIFICATE_PATH=c.pem\nAZURE_FEDERATED_TOKEN_FILE=t\n"
    )
    ci = load({}, {"GITHUB_ACTIONS": "true", "AZURE_TENANT_ID": T, "AZURE_CLIENT_ID": C})
    assert ci.dotenv_withheld == (
        "AZURE_USERNAME",
        "AZURE_CLIENT_SECRET",
        "AZURE_PASSWORD",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
    )
    assert ci.cloud.name == "AzureChinaCloud"  # the file's other variables still load
    assert load({}, {"AZURE_TENANT_ID": T, "AZURE_CLIENT_ID": C}).dotenv_withheld == ()

"""`azpytest prepare` as a workflow step, against the sandbox: secrets exported and masked,
nothing leaked, and a diagnosis a user can act on for every failure."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from typing import Any

import pytest

from azpytest.github import escape_data
from azpytest_sandbox import Sandbox

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CLIENT = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
OBJECT = "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e"
MAIN = "repo:octo-org/octo-repo:ref:refs/heads/main"
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "-----END PRIVATE KEY-----"
)


def app(subject: str = MAIN, client_id: str = CLIENT) -> dict[str, Any]:
    return {
        "name": "azpytest-ci",
        "client_id": client_id,
        "object_id": OBJECT,
        "federated_credentials": [{"subject": subject}],
    }


def world(
    secrets: dict[str, Any],
    grants: list[dict[str, str]] | None = None,
    subject: str = MAIN,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "tenants": [{"id": TENANT, "name": "contoso", "apps": [app(subject)]}],
        "vaults": [
            {
                "name": "kv-app",
                "secrets": secrets,
                "grants": [{"principal": "azpytest-ci"}] if grants is None else grants,
            }
        ],
        **extra,
    }


def fifty_secrets() -> dict[str, str]:
    values = {f"app-setting-{i:02d}": f"value-{i:02d}-{'x' * i}-Zq" for i in range(47)}
    values["tls-key"] = PEM
    values["greeting"] = "grüße aus Köln 🌍 — ünïcödé"
    values["db-password"] = 'p@ss"word\\with%specials\r\nsecond line here'
    return values


Step = Callable[..., Any]


def test_fifty_secrets_exported_masked_and_never_written(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    secrets = fifty_secrets()
    sandbox = make_sandbox(world(secrets))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "- '*'"}
    )
    assert result.returncode == 0, result.stderr + result.stdout
    # Every value reaches the later steps under its derived name.
    for name, value in secrets.items():
        assert result.env_file[name.upper().replace("-", "_")] == value.replace("\r\n", "\n")
    # Every value, and every line of a multi-line value, was masked...
    masks = result.commands("add-mask")
    for value in secrets.values():
        assert escape_data(value) in masks
        for line in value.splitlines():
            if len(line.strip()) >= 4:
                assert escape_data(line.strip()) in masks
    # ...before anything else was printed about it.
    last_mask = max(
        i for i, line in enumerate(result.stdout.splitlines()) if line.startswith("::add-mask::")
    )
    first_other = min(
        i for i, line in enumerate(result.stdout.splitlines()) if "Key Vault kv-app" in line
    )
    assert last_mask < first_other
    # The tokens were masked too: the GitHub assertion and the access token.
    assert sum(m.startswith("eyJ") for m in masks) >= 2
    # No value in stdout/stderr/summary/prepared.json/audit log (scan every byte written).
    written = result.written()
    for value in secrets.values():
        for line in value.splitlines():
            if len(line.strip()) >= 4:
                assert line.strip() not in written
    assert "eyJ" not in written
    run_dir = result.runner_temp / "azpytest" / "12345678901-1-test"
    prepared = json.loads((run_dir / "prepared.json").read_text())
    assert len(prepared["secrets"]) == 50
    assert prepared["masked_env"] == sorted(n.upper().replace("-", "_") for n in secrets)
    assert stat.S_IMODE((run_dir / "prepared.json").stat().st_mode) == 0o600
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 50
    assert {(a["client_id"], a["object_id"], a["vault"], a["outcome"]) for a in audit} == {
        (CLIENT, OBJECT, "kv-app", "read")
    }
    assert all(a["version"] for a in audit)
    assert result.env_file["AZPYTEST_RUN_DIR"] == str(run_dir)


def test_fetch_is_concurrent(make_sandbox: Callable[..., Sandbox], actions_step: Step) -> None:
    secrets = {f"s-{i:02d}": f"v{i:02d}-value" for i in range(50)}
    sandbox = make_sandbox(world(secrets))
    mapping = "\n".join(f"S_{i:02d}: s-{i:02d}" for i in range(50))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": mapping}
    )
    assert result.returncode == 0, result.stderr
    gets = [e for e in sandbox.log.select(service="keyvault") if e.status == 200]
    assert len(gets) == 50
    # One request draws Key Vault's challenge; every other one carries the token.
    assert len(sandbox.log.select(service="keyvault")) == 51
    # One token for the vault however many threads asked, one GitHub assertion for it.
    assert len(sandbox.log.select(service="entra", method="POST")) == 1
    assert len(sandbox.log.select(service="github")) == 1
    # Concurrent: the fifty answers overlap in time instead of queueing one after another.
    times = sorted(e.time for e in gets)
    assert len({round(t, 2) for t in times}) < 50


def test_a_globs_reads_start_while_its_listing_pages_on(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    """Key Vault lists 25 secrets a page: the reads of a page's secrets go out while the next
    page is asked for, not after the last page (issue 17, part 3)."""
    secrets = {f"s-{i:02d}": f"v{i:02d}-value" for i in range(70)}  # three pages
    sandbox = make_sandbox(world(secrets))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "- s-*"}
    )
    assert result.returncode == 0, result.stderr
    log = [e for e in sandbox.log.select(service="keyvault") if e.status == 200]
    pages = [e for e in log if e.path.startswith("/secrets?")]
    reads = [e for e in log if not e.path.startswith("/secrets?")]
    assert len(pages) == 3 and len(reads) == 70
    # Answered (logged) before the last page was: reads of the first page's secrets.
    assert [e for e in reads if e.time < pages[-1].time], [e.path for e in log]
    # The environment keeps the order of the names, whatever order the reads ended in.
    exported = [name for name in result.env_file if name.startswith("S_")]
    assert exported == [f"S_{i:02d}" for i in range(70)]


def test_named_secret_mapping_and_glob_skips_disabled_with_warning(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        world(
            {
                "pg-host": "db.internal",
                "pg-password": "hunter2-long",
                "pg-old": {"value": "gone-value", "enabled": False},
                "pg-stale": {"value": "stale-value", "expires": "2020-01-01T00:00:00Z"},
                "other": "not-taken",
            }
        )
    )
    result = actions_step(
        sandbox,
        "prepare",
        env={
            "AZPYTEST_KEY_VAULT": "https://kv-app.vault.azure.net/",
            "AZPYTEST_SECRETS": "- pg-*\n- DATABASE_HOST: pg-host",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.env_file["DATABASE_HOST"] == "db.internal"
    assert result.env_file["PG_PASSWORD"] == "hunter2-long"
    assert "OTHER" not in result.env_file and "PG_OLD" not in result.env_file
    warnings = result.commands("warning")
    assert (
        "Key Vault secret 'pg-old' of kv-app is disabled; skipped (taken by the glob 'pg-*')"
        in warnings
    )
    assert any(
        w.startswith("Key Vault secret 'pg-stale' of kv-app is expired (since 2020-01-01")
        for w in warnings
    )


def test_a_glob_never_exports_a_name_that_changes_how_programs_start(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        world(
            {
                "bash-env": "/tmp/evil.sh",
                "ld-preload": "/tmp/evil.so",
                "path": "/tmp/evil-bin",
                "pg-host": "db.internal",
                "pg-port": "54",
            }
        )
    )
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "- '*'"}
    )
    assert result.returncode == 0, result.stderr
    assert result.env_file["PG_HOST"] == "db.internal"
    assert not {"BASH_ENV", "LD_PRELOAD", "PATH"} & set(result.env_file)
    denied = [w for w in result.commands("warning") if "changes how later steps" in w]
    assert denied == [
        f"Key Vault secret {name!r} of kv-app would set {env}, which changes how later steps' "
        f"programs start or which credential they use; skipped (taken by the glob '*'). Map it "
        f"to another name to use it: `MY_{env}: {name}`"
        for name, env in (("bash-env", "BASH_ENV"), ("ld-preload", "LD_PRELOAD"), ("path", "PATH"))
    ]
    # A two-character value is still masked, with one warning that names the secret.
    assert result.env_file["PG_PORT"] == "54"
    assert "::add-mask::54" in result.stdout
    short = [w for w in result.commands("warning") if "shorter than 4 characters" in w]
    assert len(short) == 1 and short[0].startswith("Key Vault secret 'pg-port' of kv-app (PG_PORT)")
    assert "54" not in short[0]


def test_warnings_past_githubs_cap_go_to_the_log_with_a_final_count(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    disabled = {f"old-{i:02d}": {"value": f"gone-{i:02d}", "enabled": False} for i in range(14)}
    sandbox = make_sandbox(world({**disabled, "pg-host": "db.internal"}))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "- '*'"}
    )
    assert result.returncode == 0, result.stderr
    warnings = result.commands("warning")
    assert len(warnings) == 10  # GitHub shows 10 warning annotations per step
    assert all("is disabled; skipped" in w for w in warnings[:9])
    assert warnings[9] == (
        "14 warnings in all: the first 9 are annotations, the other 5 are in this step's log "
        "(lines 'azpytest: warning:'); GitHub shows 10 warning annotations per step."
    )
    logged = [line for line in result.stdout.splitlines() if line.startswith("azpytest: warning:")]
    assert [line.split("'")[1] for line in logged] == [f"old-{i:02d}" for i in range(9, 14)]


def test_an_explicit_mapping_to_a_denied_name_exits_2_with_one_line(
    sandbox: Sandbox, actions_step: Step
) -> None:
    result = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "BASH_ENV: pg-host"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "azpytest prepare: error: secrets: BASH_ENV <- pg-host: a secret may not set BASH_ENV, "
        "which changes how later steps' programs start or which credential they use; map it "
        "to another name (`MY_BASH_ENV: pg-host`)"
    ]


def test_named_disabled_secret_is_an_error(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(world({"pg-old": {"value": "gone-value", "enabled": False}}))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "OLD: pg-old"}
    )
    assert result.returncode == 1
    assert result.commands("error")[0].startswith(
        "Key Vault secret 'pg-old' of kv-app is disabled."
    )


def test_no_id_token_permission(sandbox: Sandbox, actions_step: Step) -> None:
    result = actions_step(
        sandbox,
        "prepare",
        env={"ACTIONS_ID_TOKEN_REQUEST_URL": "", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ""},
    )
    assert result.returncode == 1
    [error] = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert error.startswith(
        "::error title=azpytest prepare%3A GitHub gave this job no OIDC token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL is not set).::"
    )
    assert "id-token: write" in result.summary
    assert "```yaml\npermissions:\n  id-token: write" in result.summary


def test_fork_pull_request_gets_its_own_explanation(
    sandbox: Sandbox, actions_step: Step, tmp_path: Any
) -> None:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {"pull_request": {"head": {"repo": {"full_name": "someone/octo-repo", "fork": True}}}}
        )
    )
    result = actions_step(
        sandbox,
        "prepare",
        env={
            "ACTIONS_ID_TOKEN_REQUEST_URL": "",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event),
        },
    )
    assert result.returncode == 1
    assert "the pull request comes from a fork" in result.summary
    # The condition keeps push and same-repository pull requests (not only forks' absence).
    assert (
        "if: github.event_name != 'pull_request' || !github.event.pull_request.head.repo.fork"
        in result.summary
    )
    assert "Do not switch to `pull_request_target` to get a token" in result.summary


def test_subject_mismatch_shows_assertion_and_the_credential_to_create(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        world(
            {},
            subject="repo:octo-org/octo-repo:environment:prod",
            github={"ref": "refs/heads/feature/x"},
        )
    )
    result = actions_step(sandbox, "prepare")
    assert result.returncode == 1
    text = result.stderr + "\n".join(result.commands("error"))
    summary = result.summary
    assert (
        f"Entra ID found no federated credential on app {CLIENT} for this job (AADSTS70021)."
        in summary
    )
    assert "| assertion subject | `repo:octo-org/octo-repo:ref:refs/heads/feature/x` |" in summary
    assert "| assertion issuer | `https://token.actions.githubusercontent.com` |" in summary
    assert "| assertion audience | `api://AzureADTokenExchange` |" in summary
    assert (
        f"az ad app federated-credential create --id {CLIENT} --parameters "
        '\'{"name": "ref-refs-heads-feature-x", "issuer": "https://token.actions.githubusercontent.com", '
        '"subject": "repo:octo-org/octo-repo:ref:refs/heads/feature/x", '
        '"audiences": ["api://AzureADTokenExchange"]}\''
    ) in summary
    assert "environment:" in summary and "pull_request" in summary
    assert "AADSTS70021" in text
    assert "Traceback" not in result.stderr


def test_subject_case_mismatch_is_named(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(world({}, subject="repo:Octo-Org/octo-repo:ref:refs/heads/main"))
    result = actions_step(sandbox, "prepare")
    assert result.returncode == 1
    assert "(AADSTS7002138)" in result.summary
    assert "only in letter case" in result.summary


def test_unknown_client_id(sandbox: Sandbox, actions_step: Step) -> None:
    result = actions_step(
        sandbox, "prepare", env={"AZURE_CLIENT_ID": "99999999-9999-4999-8999-999999999999"}
    )
    assert result.returncode == 1
    assert (
        f"Entra ID does not know app 99999999-9999-4999-8999-999999999999 in tenant {TENANT} "
        "(AADSTS700016)."
    ) in result.summary
    assert "client-id or tenant-id is wrong" in result.summary


def test_expired_assertion(make_sandbox: Callable[..., Sandbox], actions_step: Step) -> None:
    sandbox = make_sandbox({"github": {"clock_skew_s": -900}})
    result = actions_step(sandbox, "prepare")
    assert result.returncode == 1
    assert "outside its valid time range (AADSTS700024)" in result.summary
    assert "runner's clock" in result.summary


def test_vault_forbidden_names_identity_and_role(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        world(
            {"mine": "mine-value", "theirs": "their-value"},
            grants=[{"principal": "azpytest-ci", "scope": "mine"}],
        )
    )
    result = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "A: mine\nB: theirs"},
    )
    assert result.returncode == 1
    summary = result.summary
    assert (
        "Key Vault refused secret 'theirs' of vault kv-app to this job's identity (403 ForbiddenByRbac)."
        in summary
    )
    assert f"client id {CLIENT}, object id {OBJECT}" in summary
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in summary
    assert (
        f'az role assignment create --role "Key Vault Secrets User" --assignee-object-id {OBJECT} '
        "--assignee-principal-type ServicePrincipal --scope /subscriptions/"
    ) in summary
    assert "/vaults/kv-app\n" in summary
    audit = (result.runner_temp / "azpytest" / "12345678901-1-test" / "audit.jsonl").read_text()
    outcomes = {
        json.loads(line)["secret"]: json.loads(line)["outcome"] for line in audit.splitlines()
    }
    assert outcomes == {"mine": "read", "theirs": "forbidden"}
    kinds = {
        json.loads(line)["secret"]: json.loads(line).get("kind") for line in audit.splitlines()
    }
    assert kinds == {"mine": None, "theirs": "keyvault-forbidden"}
    assert "mine-value" not in result.written()


def test_missing_secret_suggests_close_names(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(world({"pg-password": "x-value", "pg-host": "h-value"}))
    result = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "PW: pg-pasword"},
    )
    assert result.returncode == 1
    assert "Key Vault kv-app has no secret named 'pg-pasword'." in result.summary
    assert "Close names that exist: pg-password." in result.summary


def test_retries_429_and_503_on_token_and_vault(sandbox: Sandbox, actions_step: Step) -> None:
    sandbox.add_fault(service="entra", path="*/token", status=429, times=2, retry_after=0.05)
    sandbox.add_fault(
        service="keyvault", path="/secrets/pg-host*", status=503, times=2, retry_after=0.05
    )
    sandbox.add_fault(service="github", path="*/idtoken", status=503, times=1, retry_after=0.05)
    result = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-azpytest", "AZPYTEST_SECRETS": "HOST: pg-host"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.env_file["HOST"] == "127.0.0.1"
    statuses = [e.status for e in sandbox.log.select(service="entra", method="POST")]
    assert statuses == [429, 429, 200]


def test_dead_vault_fails_in_bounded_time_naming_host_and_proxy(
    sandbox: Sandbox, actions_step: Step
) -> None:
    result = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-nowhere", "AZPYTEST_SECRETS": "X: x"},
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        f"Could not reach kv-nowhere.vault.azure.net through the proxy "
        f"http://127.0.0.1:{sandbox.proxy_port} (HTTPS_PROXY)."
    ) in result.summary


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"AZPYTEST_CLOUD": "Mars"},
            "azpytest prepare: error: cloud: unknown cloud 'Mars'; use one of AzureCloud, "
            "AzureUSGovernment, AzureChinaCloud",
        ),
        (
            {"AZPYTEST_KEY_VAULT": "kv_bad!"},
            "azpytest prepare: error: key-vault: 'kv_bad!' is not a vault name (3-24 letters, digits "
            "and single hyphens, starting with a letter) or a vault URL",
        ),
        (
            {"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "X: bad_name"},
            "azpytest prepare: error: secrets: 'bad_name' is not a Key Vault secret name (1-127 "
            "letters, digits and hyphens)",
        ),
        (
            {"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_SECRETS": "X: [unclosed"},
            "azpytest prepare: error: secrets: not valid YAML (line 1); write `ENV_NAME: secret-name` "
            "lines or a list of secret names",
        ),
        (
            {"AZURE_CLIENT_ID": ""},
            "azpytest prepare: error: client-id: required in GitHub Actions: set the client-id input "
            "or AZURE_CLIENT_ID (the app registration's client ID; not a secret)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    sandbox: Sandbox, actions_step: Step, env: dict[str, str], line: str
) -> None:
    result = actions_step(sandbox, "prepare", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]
    assert result.commands("error") == [line.removeprefix("azpytest prepare: error: ")]


def test_local_run_writes_a_private_env_file(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        {
            "tenants": [
                {
                    "id": TENANT,
                    "name": "contoso",
                    "apps": [{**app(), "secrets": ["laptop-secret-value"]}],
                }
            ],
            "vaults": [
                {
                    "name": "kv-app",
                    "secrets": {"pg-password": "it's a secret"},
                    "grants": [{"principal": "azpytest-ci"}],
                }
            ],
        }
    )
    result = actions_step(
        sandbox,
        "prepare",
        actions=False,
        env={
            "AZURE_CLIENT_SECRET": "laptop-secret-value",
            "AZPYTEST_KEY_VAULT": "kv-app",
            "AZPYTEST_SECRETS": "PGPASSWORD: pg-password",
        },
    )
    assert result.returncode == 0, result.stderr
    run_dir = result.runner_temp / "azpytest" / "local"
    env_file = run_dir / "prepared.env"
    assert env_file.read_text() == (
        f"export AZPYTEST_RUN_DIR={run_dir}\nexport PGPASSWORD='it'\"'\"'s a secret'\n"
        f"export AZPYTEST_TENANT_ID={TENANT}\nexport AZPYTEST_CLIENT_ID={CLIENT}\n"
        "export AZPYTEST_SUBSCRIPTION_ID=c0ffee00-1234-4abc-8def-0123456789ab\n"
        "export AZPYTEST_CLOUD=AzureCloud\n"
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "azpytest: credential: DefaultAzureCredential (outside GitHub Actions" in result.stdout
    assert f"  set -a; . {env_file}; set +a" in result.stdout
    assert "::" not in result.stdout  # no workflow commands outside Actions
    assert "it's a secret" not in result.stdout + result.stderr
    # A missing .env is a warning, not an error.
    assert "warning: no .env file here; using the environment only" in result.stderr


def test_local_run_with_no_credential_lists_what_was_tried(
    sandbox: Sandbox, actions_step: Step, tmp_path: Any
) -> None:
    result = actions_step(
        sandbox,
        "prepare",
        actions=False,
        env={
            "AZURE_CLIENT_ID": "",
            "AZURE_TENANT_ID": "",
            "AZURE_CONFIG_DIR": str(tmp_path / "az"),
            "IDENTITY_ENDPOINT": "",
            "PATH": "/usr/bin:/bin",
        },
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.count("azpytest prepare: error: No local Azure credential could get a token")
        == 1
    )
    assert "az login" in result.stderr
    assert "EnvironmentCredential" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tenant_domain_works_end_to_end(
    make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    # Entra accepts the tenant's domain where its id goes; Key Vault's challenge then names
    # the tenant by its id, which must be recognised as the same tenant.
    sandbox = make_sandbox(world({"pg-host": "db.internal"}))
    result = actions_step(
        sandbox,
        "prepare",
        env={
            "AZPYTEST_TENANT_ID": "contoso.onmicrosoft.com",
            "AZURE_TENANT_ID": "",
            "AZPYTEST_KEY_VAULT": "kv-app",
            "AZPYTEST_SECRETS": "- pg-host",
        },
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.env_file["PG_HOST"] == "db.internal"

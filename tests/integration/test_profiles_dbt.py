"""`azpytest prepare` with the profiles input, then a real `dbt build` against a real
PostgreSQL: connection metadata from the sandbox's Key Vault, profiles.yml and
connections.yaml written 0600 with no secret in them, and dbt's own words when the login fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from azpytest import profiles
from azpytest.dbt import DbtResult, ProfileVariableMissing, run_dbt
from azpytest.github import escape_data
from azpytest_sandbox import Sandbox
from azpytest_sandbox.postgres import TempPostgres

PROJECT = Path(__file__).resolve().parents[1] / "data" / "dbt_project"
RUN_DIR = ("azpytest", "12345678901-1-test")  # under RUNNER_TEMP, as actions_step runs it
ENTRA_ROLE = "azpytest-ci"  # the default scenario's app: its tokens log in as this role

PROFILES = """\
connections:
  warehouse:
    kind: postgres
    host: {secret: pg-host}
    port: {secret: pg-port}
    database: {secret: pg-database}
    user: {secret: pg-user}
    auth: password
    password: {secret: pg-password}
    sslmode: prefer
dbt:
  profile: azpytest_demo
  target: ci
  connection: warehouse
  schema: dbt_ci
  threads: 4
"""

# What `dbt build` of the tiny project runs, and the status each node must end with.
EXPECTED = {
    "seed.azpytest_demo.customers": "success",
    "model.azpytest_demo.stg_customers": "success",
    "model.azpytest_demo.customers_by_country": "success",
    "test.azpytest_demo.unique_stg_customers_id": "pass",
    "test.azpytest_demo.not_null_stg_customers_id": "pass",
    "test.azpytest_demo.unique_customers_by_country_country": "pass",
    "test.azpytest_demo.not_null_customers_by_country_country": "pass",
    "test.azpytest_demo.every_customer_counted": "pass",
}

Step = Callable[..., Any]


def statuses(result: DbtResult) -> dict[str, str]:
    """unique_id -> status, generic tests without the hash dbt appends to their ids."""
    return {re.sub(r"\.[0-9a-f]{10}$", "", k): v for k, v in result.statuses().items()}


def vault(secrets: dict[str, str]) -> dict[str, Any]:
    return {
        "vaults": [{"name": "kv-app", "grants": [{"principal": "azpytest-ci"}], "secrets": secrets}]
    }


def db_secrets(db: Any, password: str | None = None) -> dict[str, str]:
    return {
        "pg-host": db.pg.host,
        "pg-port": str(db.pg.port),
        "pg-database": db.name,
        "pg-user": db.user,
        "pg-password": db.password if password is None else password,
    }


def prepare(
    make_sandbox: Callable[..., Sandbox], actions_step: Step, secrets: dict[str, str], text: str
) -> tuple[Sandbox, Any]:
    sandbox = make_sandbox(vault(secrets))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_PROFILES": text}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return sandbox, result


def build(result: Any, tmp_path: Path, *, env: dict[str, str] | None = None) -> DbtResult:
    """`dbt build` in the next step of the job: the environment prepare left behind."""
    return run_dbt(
        ["build"],
        project_dir=PROJECT,
        profiles_dir=result.env_file["DBT_PROFILES_DIR"],
        env={**os.environ, **result.env_file} if env is None else env,
        output_dir=tmp_path / "dbt",
    )


def test_prepare_writes_private_profiles_and_dbt_builds_from_them(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    app_database: Any,
    tmp_path: Path,
) -> None:
    values = db_secrets(app_database)
    _, result = prepare(make_sandbox, actions_step, values, PROFILES)
    run_dir = result.runner_temp.joinpath(*RUN_DIR)

    # Both files, 0600, no Key Vault value in either (the env_var() names stand in for them).
    for name in ("profiles.yml", "connections.yaml"):
        path = run_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        text = path.read_text()
        for value in values.values():
            assert value not in text, (name, value)
    assert "{{ env_var('AZPYTEST_WAREHOUSE_PASSWORD') }}" in (run_dir / "profiles.yml").read_text()
    assert (
        "{{ env_var('AZPYTEST_WAREHOUSE_PORT') | as_number }}"
        in (run_dir / "profiles.yml").read_text()
    )

    # The next steps get the profile folder, the connections file and each field, masked.
    env = result.env_file
    assert env["DBT_PROFILES_DIR"] == str(run_dir)
    assert env["AZPYTEST_CONNECTIONS"] == str(run_dir / "connections.yaml")
    assert {k: env[k] for k in env if k.startswith("AZPYTEST_WAREHOUSE_")} == {
        "AZPYTEST_WAREHOUSE_HOST": app_database.pg.host,
        "AZPYTEST_WAREHOUSE_PORT": str(app_database.pg.port),
        "AZPYTEST_WAREHOUSE_DATABASE": app_database.name,
        "AZPYTEST_WAREHOUSE_USER": app_database.user,
        "AZPYTEST_WAREHOUSE_PASSWORD": app_database.password,
    }
    assert escape_data(app_database.password) in result.commands("add-mask")
    assert app_database.password not in result.written()

    dbt = build(result, tmp_path)
    assert dbt.returncode == 0, dbt.stdout
    assert dbt.error_lines == ()
    assert statuses(dbt) == EXPECTED
    assert dbt.log_path == tmp_path / "dbt" / "logs" / "dbt.log" and dbt.log_path.is_file()
    assert app_database.password not in dbt.stdout + dbt.log_path.read_text()
    assert "--profiles-dir" in dbt.command and app_database.password not in dbt.command

    with app_database.admin() as conn:
        rows = conn.execute(
            "select country, customers from dbt_ci.customers_by_country order by country"
        ).fetchall()
    assert rows == [("FI", 1), ("GB", 1), ("US", 2)]

    # The fixtures' side: connections.yaml plus the exported variables open the same database.
    connection = profiles.load_connections(Path(env["AZPYTEST_CONNECTIONS"]), env)["warehouse"]
    with psycopg.connect(
        host=connection.host,
        port=connection.port,
        dbname=connection.database,
        user=connection.user,
        password=connection.password(env),
        sslmode=connection.sslmode,
    ) as conn:
        assert conn.execute("select count(*) from dbt_ci.stg_customers").fetchone() == (4,)


def test_wrong_password_in_key_vault_fails_with_dbts_own_error(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    app_database: Any,
    tmp_path: Path,
) -> None:
    wrong = "not-the-password-" + secrets.token_hex(4)
    _, result = prepare(
        make_sandbox, actions_step, db_secrets(app_database, password=wrong), PROFILES
    )
    dbt = build(result, tmp_path)
    assert dbt.returncode == 2
    assert dbt.run_results is None
    assert dbt.error_lines[0] == "Database Error"
    assert f'password authentication failed for user "{app_database.user}"' in dbt.error_lines[1]
    assert wrong not in dbt.stdout


def test_expired_role_password_fails_the_same_way(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    app_database: Any,
    tmp_path: Path,
) -> None:
    with app_database.pg.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} VALID UNTIL '2000-01-01'").format(
                sql.Identifier(app_database.user)
            )
        )
    _, result = prepare(make_sandbox, actions_step, db_secrets(app_database), PROFILES)
    dbt = build(result, tmp_path)
    assert dbt.returncode == 2
    assert any(
        f'password authentication failed for user "{app_database.user}"' in line
        for line in dbt.error_lines
    ), dbt.error_lines


def test_entra_target_gets_a_fresh_token_for_dbt(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    postgres_bindir: Path,
    use_sandbox: Callable[[Sandbox], Sandbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """auth: entra: no password anywhere; run_dbt trades the job's GitHub token for an Entra
    token (scope ossrdbms-aad) that PostgreSQL checks through the sandbox's LDAP responder."""
    sandbox = make_sandbox()
    superuser = "host all postgres 127.0.0.1/32 scram-sha-256"  # before the token line
    with TempPostgres(hba_lines=[superuser, sandbox.ldap_hba_line], bindir=postgres_bindir) as pg:
        with pg.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ENTRA_ROLE)))
            conn.execute(sql.SQL("CREATE DATABASE app OWNER {}").format(sql.Identifier(ENTRA_ROLE)))
        text = (
            "connections:\n"
            "  warehouse:\n"
            f"    kind: postgres\n    host: {pg.host}\n    port: {pg.port}\n"
            f"    database: app\n    user: {ENTRA_ROLE}\n    auth: entra\n"
            "dbt: {profile: azpytest_demo, schema: dbt_ci}\n"
        )
        result = actions_step(sandbox, "prepare", env={"AZPYTEST_PROFILES": text})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "AZPYTEST_WAREHOUSE_TOKEN" not in result.env_file  # never in GITHUB_ENV
        profiles_yml = Path(result.env_file["DBT_PROFILES_DIR"], "profiles.yml").read_text()
        assert "password: \"{{ env_var('AZPYTEST_WAREHOUSE_TOKEN') }}\"" in profiles_yml

        # The test step: this process, in the job (GitHub OIDC), with what prepare exported.
        use_sandbox(sandbox)
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        for name, value in result.env_file.items():
            monkeypatch.setenv(name, value)
        dbt = build(result, tmp_path, env=dict(os.environ))
        assert dbt.returncode == 0, dbt.stdout
        assert statuses(dbt) == EXPECTED
        binds = [e for e in sandbox.log.select(service="ldap") if e.method == "BIND"]
        assert binds and {(e.path, e.status) for e in binds} == {
            (f"cn={ENTRA_ROLE},dc=azpytest", 0)
        }
        with pg.connect(dbname="app") as conn:
            assert conn.execute("select count(*) from dbt_ci.customers").fetchone() == (4,)

        # A token azpytest fetched earlier (an `azpytest exec` around the tests) is replaced:
        # this one has expired and the server would refuse it.
        stale = {
            "AZPYTEST_WAREHOUSE_TOKEN": "expired-token",
            "AZPYTEST_WAREHOUSE_TOKEN_EXPIRES_ON": "1",
        }
        again = build(result, tmp_path / "again", env={**os.environ, **stale})
        assert again.returncode == 0, again.stdout
        binds = [e for e in sandbox.log.select(service="ldap") if e.method == "BIND"]
        assert {e.status for e in binds} == {0}
        # A token set by hand (no expiry beside it) is used as it is: here, refused.
        by_hand = {"AZPYTEST_WAREHOUSE_TOKEN": "expired-token"}
        refused = build(result, tmp_path / "by-hand", env={**os.environ, **by_hand})
        assert refused.returncode == 2
        assert any("LDAP authentication failed" in line for line in refused.error_lines)


def test_bad_profiles_input_exits_2_with_one_line(sandbox: Sandbox, actions_step: Step) -> None:
    text = PROFILES.replace("kind: postgres", "kind: mysql")
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_PROFILES": text}
    )
    line = (
        "profiles: connections.warehouse.kind: 'mysql' is not a connection kind; "
        "use postgres or azure-sql"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"azpytest prepare: error: {line}"]
    assert result.commands("error") == [line]


def test_profiles_with_key_vault_fields_need_key_vault(
    sandbox: Sandbox, actions_step: Step
) -> None:
    result = actions_step(sandbox, "prepare", env={"AZPYTEST_PROFILES": PROFILES})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "azpytest prepare: error: profiles: a field reads a Key Vault secret: set key-vault too"
    ]


ENTRA_PROFILES = """\
connections:
  warehouse:
    kind: postgres
    host: {host}
    port: {port}
    database: app
    user: {{secret: pg-user}}
    auth: entra
dbt: {{profile: azpytest_demo, schema: dbt_ci}}
"""


def dbt_env(tmp_path: Path) -> dict[str, str]:
    """dbt's target and log folders out of the source tree."""
    return {
        "DO_NOT_TRACK": "1",
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }


def test_exec_dbt_build_in_entra_mode_gets_a_fresh_token_and_a_missing_variable_stops_it(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    postgres_bindir: Path,
    tmp_path: Path,
) -> None:
    """`azpytest exec -- dbt build` in the step after prepare: the token the profile reads is
    fetched for the command; a variable prepare exported but the step lacks stops it before
    dbt starts, with one line naming it (dbt would send the literal text as the password)."""
    sandbox = make_sandbox(vault({"pg-user": ENTRA_ROLE}))
    superuser = "host all postgres 127.0.0.1/32 scram-sha-256"
    with TempPostgres(hba_lines=[superuser, sandbox.ldap_hba_line], bindir=postgres_bindir) as pg:
        with pg.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ENTRA_ROLE)))
            conn.execute(sql.SQL("CREATE DATABASE app OWNER {}").format(sql.Identifier(ENTRA_ROLE)))
        text = ENTRA_PROFILES.format(host=pg.host, port=pg.port)
        result = actions_step(
            sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_PROFILES": text}
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "AZPYTEST_WAREHOUSE_TOKEN" not in result.env_file
        dbt_build = ["exec", "--", str(Path(sys.executable).parent / "dbt"), "build"]
        dbt_build += ["--project-dir", str(PROJECT)]

        built = actions_step(sandbox, *dbt_build, env={**result.env_file, **dbt_env(tmp_path)})
        assert built.returncode == 0, built.stdout + built.stderr
        assert "Completed successfully" in built.stdout
        said = [line for line in built.stdout.splitlines() if line.startswith("azpytest: dbt:")]
        assert len(said) == 1 and said[0].startswith(
            "azpytest: dbt: AZPYTEST_WAREHOUSE_TOKEN holds a fresh Entra token for the profile"
        )
        binds = [e for e in sandbox.log.select(service="ldap") if e.method == "BIND"]
        assert binds and {(e.path, e.status) for e in binds} == {
            (f"cn={ENTRA_ROLE},dc=azpytest", 0)
        }
        with pg.connect(dbname="app") as conn:
            assert conn.execute("select count(*) from dbt_ci.customers").fetchone() == (4,)

        # The same step without the user variable: stopped before dbt starts, one line.
        env = {k: v for k, v in result.env_file.items() if k != "AZPYTEST_WAREHOUSE_USER"}
        missing = actions_step(sandbox, *dbt_build, env={**env, **dbt_env(tmp_path / "2")})
        profile = Path(result.env_file["DBT_PROFILES_DIR"]) / "profiles.yml"
        line = (
            f"{profile} reads AZPYTEST_WAREHOUSE_USER, which is not set: it holds the user of "
            "connection 'warehouse' (Key Vault secret 'pg-user'); run dbt in a step after "
            "`azpytest prepare` with the profiles input (it exports the variable), or outside "
            "Actions through `azpytest exec -- dbt ...`"
        )
        assert missing.returncode == 2
        assert missing.stderr.splitlines() == [f"azpytest exec: error: {line}"]
        assert not (tmp_path / "2").exists()  # dbt never started


def test_run_dbt_stops_before_dbt_when_the_password_variable_is_missing(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    app_database: Any,
    tmp_path: Path,
) -> None:
    _, result = prepare(make_sandbox, actions_step, db_secrets(app_database), PROFILES)
    env = {k: v for k, v in {**os.environ, **result.env_file}.items()}
    del env["AZPYTEST_WAREHOUSE_PASSWORD"]
    with pytest.raises(ProfileVariableMissing) as caught:
        build(result, tmp_path, env=env)
    assert str(caught.value).startswith(
        f"{result.env_file['DBT_PROFILES_DIR']}/profiles.yml reads AZPYTEST_WAREHOUSE_PASSWORD, "
        "which is not set: it holds the password of connection 'warehouse' "
        "(Key Vault secret 'pg-password'); "
    )
    assert not (tmp_path / "dbt").exists()


def test_a_missing_secret_named_in_profiles_is_reported_against_profiles(
    make_sandbox: Callable[..., Sandbox], actions_step: Step, app_database: Any
) -> None:
    text = PROFILES.replace("host: {secret: pg-host}", "host: {secret: pg-hots}")
    sandbox = make_sandbox(vault(db_secrets(app_database)))
    result = actions_step(
        sandbox, "prepare", env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_PROFILES": text}
    )
    assert result.returncode == 1
    [error] = result.commands("error")
    assert error.startswith(
        "Key Vault kv-app has no secret named 'pg-hots' (profiles: connections.warehouse.host)."
        "%0A%0ALikely cause: the name in the profiles input is misspelt, or the secret was "
        "deleted. Close names that exist: pg-host"
    ), error
    assert "Correct `connections.warehouse.host: {secret: ...}` in `profiles`" in error
    assert "secrets input" not in error and "`secrets`" not in error


def test_whitespace_at_the_ends_of_a_value_warns_once_by_name_or_is_stripped(
    make_sandbox: Callable[..., Sandbox],
    actions_step: Step,
    app_database: Any,
    tmp_path: Path,
) -> None:
    values = {**db_secrets(app_database), "pg-host": app_database.pg.host + "\n"}
    sandbox, kept = prepare(make_sandbox, actions_step, values, PROFILES)
    assert kept.commands("warning") == [
        "Key Vault secret 'pg-host' (AZPYTEST_WAREHOUSE_HOST) has whitespace at its ends (a "
        "trailing newline?), kept as it is: a host name or password with it fails; remove it "
        "in Key Vault (`az keyvault secret set --value`) or set strip-secret-whitespace: true"
    ]
    assert kept.env_file["AZPYTEST_WAREHOUSE_HOST"] == app_database.pg.host + "\n"

    stripped = actions_step(
        sandbox,
        "prepare",
        env={
            "AZPYTEST_KEY_VAULT": "kv-app",
            "AZPYTEST_PROFILES": PROFILES,
            "AZPYTEST_STRIP_SECRET_WHITESPACE": "true",
        },
    )
    assert stripped.returncode == 0, stripped.stdout + stripped.stderr
    assert stripped.commands("warning") == []
    assert (
        "azpytest: Key Vault secret 'pg-host' (AZPYTEST_WAREHOUSE_HOST): whitespace at its ends "
        "removed (strip-secret-whitespace)"
    ) in stripped.stdout.splitlines()
    assert stripped.env_file["AZPYTEST_WAREHOUSE_HOST"] == app_database.pg.host
    dbt = build(stripped, tmp_path)
    assert dbt.returncode == 0, dbt.stdout


def test_the_profile_is_checked_against_the_project_logged_and_recorded(
    make_sandbox: Callable[..., Sandbox], actions_step: Step, app_database: Any
) -> None:
    sandbox = make_sandbox(vault(db_secrets(app_database)))
    env = {"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_DBT_PROJECT": str(PROJECT)}
    wrong = PROFILES.replace("profile: azpytest_demo", "profile: wrong-name")
    refused = actions_step(sandbox, "prepare", env={**env, "AZPYTEST_PROFILES": wrong})
    line = (
        f"profiles: dbt.profile: 'wrong-name' is not the profile {PROJECT}/dbt_project.yml "
        "names: write profile: azpytest_demo"
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [f"azpytest prepare: error: {line}"]
    assert sandbox.log.select(service="entra") == []  # refused before any request

    # The project as the working directory: known too.
    wrong_dir = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-app", "AZPYTEST_WORKING_DIRECTORY": str(PROJECT),
             "AZPYTEST_PROFILES": wrong},
    )  # fmt: skip
    assert wrong_dir.returncode == 2
    assert wrong_dir.stderr.splitlines() == [f"azpytest prepare: error: {line}"]

    result = actions_step(sandbox, "prepare", env={**env, "AZPYTEST_PROFILES": PROFILES})
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = result.runner_temp.joinpath(*RUN_DIR)
    assert (
        f"azpytest: dbt: profile azpytest_demo, target ci (connection warehouse) written to "
        f"{run_dir}/profiles.yml; DBT_PROFILES_DIR={run_dir}; its profile: matches "
        f"{PROJECT}/dbt_project.yml"
    ) in result.stdout.splitlines()
    prepared = json.loads((run_dir / "prepared.json").read_text())
    assert prepared["dbt"] == {
        "profiles_yml": str(run_dir / "profiles.yml"),
        "profiles_dir": str(run_dir),
        "profile": "azpytest_demo",
        "target": "ci",
        "connection": "warehouse",
        "type": "postgres",
        "project": str(PROJECT),
    }

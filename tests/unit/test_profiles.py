"""The `profiles` input: validation (one line per mistake), the two files it writes (exact
text, mode 0600, no secret value), the variables prepare exports, and what the fixtures and
the dbt runner read back."""

from __future__ import annotations

import stat
import struct
from pathlib import Path

import pytest
import yaml

from azpytest import profiles
from azpytest.dbt import error_lines
from azpytest.inputs import InputError, SecretSpec
from azpytest.rundir import RunDir

EXAMPLE = """\
connections:
  warehouse:
    kind: postgres            # postgres | azure-sql
    host: {secret: pg-host}   # a field is a literal, or {secret: <key vault secret name>}
    port: 5432
    database: {secret: pg-database}
    user: {secret: pg-user}
    auth: password            # password | entra
    password: {secret: pg-password}   # required for auth: password; forbidden for entra
    sslmode: prefer            # optional (postgres)
dbt:                          # optional
  profile: jaffle_shop
  target: ci
  connection: warehouse       # a postgres or azure-sql connection above
  schema: dbt_ci
  threads: 4
"""

EXAMPLE_PROFILES_YML = """\
# Written by azpytest prepare (mode 0600). No secret is in this file: dbt reads each
# Key Vault value (and an Entra access token) from the variable named in env_var().
jaffle_shop:
  target: ci
  outputs:
    ci:
      type: postgres
      host: "{{ env_var('AZPYTEST_WAREHOUSE_HOST') }}"
      port: 5432
      dbname: "{{ env_var('AZPYTEST_WAREHOUSE_DATABASE') }}"
      user: "{{ env_var('AZPYTEST_WAREHOUSE_USER') }}"
      password: "{{ env_var('AZPYTEST_WAREHOUSE_PASSWORD') }}"
      schema: dbt_ci
      threads: 4
      sslmode: prefer
"""

EXAMPLE_CONNECTIONS_YAML = """\
# Written by azpytest prepare (mode 0600): the connections the azpytest fixtures open.
# No secret is in this file: {env: NAME} names the variable holding the Key Vault value.
version: 1
connections:
  warehouse:
    kind: postgres
    host: {env: AZPYTEST_WAREHOUSE_HOST, secret: pg-host}
    port: 5432
    database: {env: AZPYTEST_WAREHOUSE_DATABASE, secret: pg-database}
    user: {env: AZPYTEST_WAREHOUSE_USER, secret: pg-user}
    auth: password
    password: {env: AZPYTEST_WAREHOUSE_PASSWORD, secret: pg-password}
    sslmode: prefer
dbt:
  profile: jaffle_shop
  target: ci
  connection: warehouse
  type: postgres
"""

HEAD = (
    "# Written by azpytest prepare (mode 0600). No secret is in this file: dbt reads each\n"
    "# Key Vault value (and an Entra access token) from the variable named in env_var().\n"
)


def test_example_parses_to_four_secrets_with_derived_variables() -> None:
    spec = profiles.parse(EXAMPLE)
    assert spec.required_secrets() == (
        SecretSpec(source="pg-host", env="AZPYTEST_WAREHOUSE_HOST"),
        SecretSpec(source="pg-database", env="AZPYTEST_WAREHOUSE_DATABASE"),
        SecretSpec(source="pg-user", env="AZPYTEST_WAREHOUSE_USER"),
        SecretSpec(source="pg-password", env="AZPYTEST_WAREHOUSE_PASSWORD"),
    )
    assert spec.dbt == profiles.DbtSpec(
        profile="jaffle_shop",
        target="ci",
        connection="warehouse",
        schema="dbt_ci",
        threads=4,
        type="postgres",
        driver=None,
    )


def test_example_files_exact() -> None:
    spec = profiles.parse(EXAMPLE)
    assert profiles.profiles_yml(spec) == EXAMPLE_PROFILES_YML
    assert profiles.connections_yaml(spec) == EXAMPLE_CONNECTIONS_YAML
    # What dbt reads: plain YAML whose Key Vault fields are env_var() calls.
    target = yaml.safe_load(EXAMPLE_PROFILES_YML)["jaffle_shop"]["outputs"]["ci"]
    assert target["password"] == "{{ env_var('AZPYTEST_WAREHOUSE_PASSWORD') }}"
    assert target["port"] == 5432 and target["threads"] == 4


def test_write_creates_both_files_0600_and_returns_the_exports(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    exported = profiles.write(profiles.parse(EXAMPLE), RunDir(run_dir))
    assert exported == {
        "DBT_PROFILES_DIR": str(run_dir),
        "AZPYTEST_CONNECTIONS": str(run_dir / "connections.yaml"),
    }
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for name, text in (
        ("profiles.yml", EXAMPLE_PROFILES_YML),
        ("connections.yaml", EXAMPLE_CONNECTIONS_YAML),
    ):
        assert (run_dir / name).read_text() == text
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600


def test_without_dbt_section_only_connections_are_written(tmp_path: Path) -> None:
    text = EXAMPLE.split("dbt:", 1)[0]
    exported = profiles.write(profiles.parse(text), RunDir(tmp_path))
    assert exported == {"AZPYTEST_CONNECTIONS": str(tmp_path / "connections.yaml")}
    assert not (tmp_path / "profiles.yml").exists()


def test_literals_stay_literal_and_a_port_from_key_vault_is_a_number() -> None:
    spec = profiles.parse(
        """
connections:
  db:
    kind: postgres
    host: db.example.com
    port: {secret: pg-port}
    database: "yes"
    user: app user
    password: {secret: pg-password}
dbt: {profile: shop, schema: dbt_ci}
"""
    )
    assert [s.env for s in spec.required_secrets()] == ["AZPYTEST_DB_PORT", "AZPYTEST_DB_PASSWORD"]
    assert profiles.profiles_yml(spec) == HEAD + (
        "shop:\n"
        "  target: ci\n"
        "  outputs:\n"
        "    ci:\n"
        "      type: postgres\n"
        "      host: db.example.com\n"
        "      port: \"{{ env_var('AZPYTEST_DB_PORT') | as_number }}\"\n"
        '      dbname: "yes"\n'
        '      user: "app user"\n'
        "      password: \"{{ env_var('AZPYTEST_DB_PASSWORD') }}\"\n"
        "      schema: dbt_ci\n"
        "      threads: 4\n"
    )


def test_postgres_entra_target_reads_the_token_variable() -> None:
    spec = profiles.parse(
        """
connections:
  flex-db:
    kind: postgres
    host: {secret: pg-host}
    database: app
    user: azpytest-ci
    auth: entra
    sslmode: require
dbt: {profile: shop, target: prod, schema: analytics, threads: 8}
"""
    )
    assert spec.required_secrets() == (SecretSpec("pg-host", "AZPYTEST_FLEX_DB_HOST"),)
    assert profiles.profiles_yml(spec) == HEAD + (
        "shop:\n"
        "  target: prod\n"
        "  outputs:\n"
        "    prod:\n"
        "      type: postgres\n"
        "      host: \"{{ env_var('AZPYTEST_FLEX_DB_HOST') }}\"\n"
        "      port: 5432\n"
        "      dbname: app\n"
        "      user: azpytest-ci\n"
        "      password: \"{{ env_var('AZPYTEST_FLEX_DB_TOKEN') }}\"\n"
        "      schema: analytics\n"
        "      threads: 8\n"
        "      sslmode: require\n"
    )
    assert profiles.connections_yaml(spec).split("connections:\n", 1)[1] == (
        "  flex-db:\n"
        "    kind: postgres\n"
        "    host: {env: AZPYTEST_FLEX_DB_HOST, secret: pg-host}\n"
        "    port: 5432\n"
        "    database: app\n"
        "    user: azpytest-ci\n"
        "    auth: entra\n"
        '    scope: "https://ossrdbms-aad.database.windows.net/.default"\n'
        "    sslmode: require\n"
        "dbt:\n"
        "  profile: shop\n"
        "  target: prod\n"
        "  connection: flex-db\n"
        "  type: postgres\n"
    )


AZURE_SQL = """
connections:
  sql:
    kind: azure-sql
    host: {secret: sql-host}
    database: {secret: sql-database}
    auth: entra
  legacy:
    kind: azure-sql
    host: legacy.database.windows.net
    database: app
    user: {secret: sql-user}
    password: {secret: sql-password}
"""


def test_sqlserver_target_with_entra_uses_an_access_token() -> None:
    spec = profiles.parse(AZURE_SQL + "dbt: {profile: shop, connection: sql, schema: dbo}\n")
    assert profiles.profiles_yml(spec) == HEAD + (
        "shop:\n"
        "  target: ci\n"
        "  outputs:\n"
        "    ci:\n"
        "      type: sqlserver\n"
        '      driver: "ODBC Driver 18 for SQL Server"\n'
        "      server: \"{{ env_var('AZPYTEST_SQL_HOST') }}\"\n"
        "      port: 1433\n"
        "      database: \"{{ env_var('AZPYTEST_SQL_DATABASE') }}\"\n"
        "      schema: dbo\n"
        "      authentication: ActiveDirectoryAccessToken\n"
        "      access_token: \"{{ env_var('AZPYTEST_SQL_TOKEN') }}\"\n"
        "      access_token_expires_on: \"{{ env_var('AZPYTEST_SQL_TOKEN_EXPIRES_ON', '0') | as_number }}\"\n"
        "      threads: 4\n"
    )


def test_sqlserver_target_with_a_sql_login() -> None:
    spec = profiles.parse(
        AZURE_SQL
        + "dbt: {profile: shop, connection: legacy, schema: dbo, driver: ODBC Driver 17 for SQL Server}\n"
    )
    assert profiles.profiles_yml(spec).split("    ci:\n", 1)[1] == (
        "      type: sqlserver\n"
        '      driver: "ODBC Driver 17 for SQL Server"\n'
        "      server: legacy.database.windows.net\n"
        "      port: 1433\n"
        "      database: app\n"
        "      schema: dbo\n"
        "      authentication: sql\n"
        "      user: \"{{ env_var('AZPYTEST_LEGACY_USER') }}\"\n"
        "      password: \"{{ env_var('AZPYTEST_LEGACY_PASSWORD') }}\"\n"
        "      threads: 4\n"
    )


def test_fabric_target() -> None:
    spec = profiles.parse(
        AZURE_SQL + "dbt: {profile: shop, connection: sql, schema: dbo, type: fabric}\n"
    )
    assert profiles.profiles_yml(spec).split("    ci:\n", 1)[1] == (
        "      type: fabric\n"
        '      driver: "ODBC Driver 18 for SQL Server"\n'
        "      server: \"{{ env_var('AZPYTEST_SQL_HOST') }}\"\n"
        "      database: \"{{ env_var('AZPYTEST_SQL_DATABASE') }}\"\n"
        "      schema: dbo\n"
        "      authentication: ActiveDirectoryAccessToken\n"
        "      access_token: \"{{ env_var('AZPYTEST_SQL_TOKEN') }}\"\n"
        "      threads: 4\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "connections: [unclosed",
            "not valid YAML (line 1); write a `connections:` mapping (and optionally `dbt:`)",
        ),
        ("- a\n- b", "expected a mapping with `connections:` (and optionally `dbt:`)"),
        ("connection: {}", "top level: unknown field 'connection'; did you mean connections?"),
        (
            "connections: {}",
            "connections: expected a mapping of connection names to their fields, e.g. `connections: {warehouse: {kind: postgres, ...}}`",
        ),
        (
            "connections: {1db: {kind: postgres}}",
            "connections.1db: a connection name is a letter then letters, digits, _ or - (up to 63)",
        ),
        (
            "connections: {db: postgres}",
            "connections.db: expected a mapping of fields (kind, host, database, user, auth, ...)",
        ),
        (
            "connections: {db: {kind: postgres, hots: x}}",
            "connections.db: unknown field 'hots'; did you mean host?",
        ),
        ("connections: {db: {host: x}}", "connections.db.kind: required: postgres or azure-sql"),
        (
            "connections: {db: {kind: mysql}}",
            "connections.db.kind: 'mysql' is not a connection kind; use postgres or azure-sql",
        ),
        (
            "connections: {db: {kind: postgres, auth: msi}}",
            "connections.db.auth: 'msi' is not an auth mode; use password or entra",
        ),
        (
            "connections: {db: {kind: postgres, auth: password, password: hunter2}}",
            "connections.db.password: required for auth: password, as {secret: <secret name>}: a password is read from Key Vault, never written in the input",
        ),
        (
            "connections: {db: {kind: postgres, auth: password}}",
            "connections.db.password: required for auth: password, as {secret: <secret name>}: a password is read from Key Vault, never written in the input",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, password: {secret: pw}}}",
            "connections.db.password: auth: entra logs in with an access token; remove password (or use auth: password)",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, database: d, user: u}}",
            "connections.db.host: required: a literal or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: h, user: u}}",
            "connections.db.database: required: a literal or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: h, database: d}}",
            "connections.db.user: required: a literal or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: {secret: pg_host}, database: d, user: u}}",
            "connections.db.host: 'pg_host' is not a Key Vault secret name (1-127 letters, digits and hyphens)",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: {secret: 'pg-*'}, database: d, user: u}}",
            "connections.db.host: 'pg-*' is not a Key Vault secret name (1-127 letters, digits and hyphens)",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: {vault: x}, database: d, user: u}}",
            "connections.db.host: write a literal or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: [a], database: d, user: u}}",
            "connections.db.host: ['a'] is not a literal string or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: '{{ x }}', database: d, user: u}}",
            "connections.db.host: a literal may not hold Jinja ({{, {%, {#): dbt would render it",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: h, port: 99999, database: d, user: u}}",
            "connections.db.port: 99999 is not a port (1-65535) or {secret: <secret name>}",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: h, database: d, user: u, sslmode: strict}}",
            "connections.db.sslmode: 'strict' is not a sslmode; use disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            "connections: {db: {kind: azure-sql, auth: entra, host: h, database: d, sslmode: require}}",
            "connections.db.sslmode: applies to postgres connections only; remove it",
        ),
        (
            "connections: {db: {kind: postgres, host: h, database: d, user: u, password: {secret: p}, scope: x/.default}}",
            "connections.db.scope: applies to auth: entra only; remove it",
        ),
        (
            "connections: {db: {kind: postgres, auth: entra, host: h, database: d, user: u, scope: db}}",
            "connections.db.scope: 'db' is not a scope (https://<resource>/.default)",
        ),
        (
            "connections: {a-b: {kind: postgres, auth: entra, host: h, database: d, user: u}, a_b: {kind: postgres, auth: entra, host: h, database: d, user: u}}",
            "connections.a_b: its variables clash with connection 'a-b' (AZPYTEST_A_B_TOKEN); rename one of them",
        ),
    ],
)
def test_connection_errors_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        profiles.parse(text)
    assert caught.value.input == "profiles"
    assert caught.value.problem == problem
    assert str(caught.value) == f"profiles: {problem}"


ONE = "connections: {db: {kind: postgres, auth: entra, host: h, database: d, user: u}}\n"
TWO = (
    "connections: {db: {kind: postgres, auth: entra, host: h, database: d, user: u},\n"
    "              sql: {kind: azure-sql, auth: entra, host: h, database: d}}\n"
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            ONE + "dbt: shop",
            "dbt: expected a mapping (profile, target, connection, schema, threads)",
        ),
        (ONE + "dbt:", "dbt: expected a mapping (profile, target, connection, schema, threads)"),
        (
            ONE + "dbt: {profile: p, schema: s, thread: 2}",
            "dbt: unknown field 'thread'; did you mean threads?",
        ),
        (
            ONE + "dbt: {schema: s}",
            "dbt.profile: required: a dbt profile name (the profile: of dbt_project.yml)",
        ),
        (
            ONE + "dbt: {profile: 'my shop', schema: s}",
            "dbt.profile: 'my shop' is not a dbt profile name (the profile: of dbt_project.yml)",
        ),
        (
            ONE + "dbt: {profile: p}",
            "dbt.schema: required: a schema name (a letter or _, then letters, digits, _ or $)",
        ),
        (
            ONE + "dbt: {profile: p, schema: dbt-ci}",
            "dbt.schema: 'dbt-ci' is not a schema name (a letter or _, then letters, digits, _ or $)",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, target: 'a b'}",
            "dbt.target: 'a b' is not a dbt target name (letters, digits, _ and -)",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, connection: dw}",
            "dbt.connection: 'dw' is not a connection above; use one of db",
        ),
        (
            TWO + "dbt: {profile: p, schema: s}",
            "dbt.connection: required with several connections: one of db, sql",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, threads: 0}",
            "dbt.threads: 0 is not a whole number from 1 to 64",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, threads: four}",
            "dbt.threads: 'four' is not a whole number from 1 to 64",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, type: sqlserver}",
            "dbt.type: 'sqlserver' cannot use the postgres connection 'db'; use postgres",
        ),
        (
            TWO + "dbt: {profile: p, schema: s, connection: sql, type: postgres}",
            "dbt.type: 'postgres' cannot use the azure-sql connection 'sql'; use sqlserver or fabric",
        ),
        (
            ONE + "dbt: {profile: p, schema: s, driver: x}",
            "dbt.driver: applies to sqlserver and fabric targets only; remove it",
        ),
        (
            TWO + "dbt: {profile: p, schema: s, connection: sql, driver: 'x;y'}",
            "dbt.driver: 'x;y' is not an ODBC driver name",
        ),
        (
            "connections: {sql: {kind: azure-sql, host: h, database: d, user: u, password: {secret: p}}}\n"
            "dbt: {profile: p, schema: s, type: fabric}",
            "dbt.type: Fabric warehouses take Entra logins only: set auth: entra on connection 'sql'",
        ),
    ],
)
def test_dbt_errors_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        profiles.parse(text)
    assert caught.value.problem == problem


# ---------------------------------------------------------------------------- reading back


ENV = {
    "AZPYTEST_WAREHOUSE_HOST": "db.internal",
    "AZPYTEST_WAREHOUSE_DATABASE": "app",
    "AZPYTEST_WAREHOUSE_USER": "app_user",
    "AZPYTEST_WAREHOUSE_PASSWORD": "hunter2-long",
}


def test_load_connections_reads_key_vault_fields_from_the_environment(tmp_path: Path) -> None:
    profiles.write(profiles.parse(EXAMPLE), RunDir(tmp_path))
    [(name, connection)] = profiles.load_connections(tmp_path / "connections.yaml", ENV).items()
    assert name == "warehouse"
    assert connection == profiles.Connection(
        name="warehouse",
        kind="postgres",
        host="db.internal",
        port=5432,
        database="app",
        user="app_user",
        auth="password",
        password_env="AZPYTEST_WAREHOUSE_PASSWORD",
        sslmode="prefer",
    )
    assert "hunter2" not in repr(connection)
    assert connection.password(ENV) == "hunter2-long"


def test_an_unset_variable_names_itself_and_the_connection(tmp_path: Path) -> None:
    profiles.write(profiles.parse(EXAMPLE), RunDir(tmp_path))
    env = {k: v for k, v in ENV.items() if k != "AZPYTEST_WAREHOUSE_USER"}
    with pytest.raises(profiles.ConnectionsError) as caught:
        profiles.load_connections(tmp_path / "connections.yaml", env)
    assert str(caught.value) == (
        "connection 'warehouse': AZPYTEST_WAREHOUSE_USER is not set: it holds the user "
        "(Key Vault secret 'pg-user'); run `azpytest prepare` with the profiles input, or "
        "load the environment it wrote"
    )
    connection = profiles.load_connections(tmp_path / "connections.yaml", ENV)["warehouse"]
    with pytest.raises(profiles.ConnectionsError, match="AZPYTEST_WAREHOUSE_PASSWORD is not set"):
        connection.password({})


def test_entra_connection_has_a_scope_and_no_password(tmp_path: Path) -> None:
    profiles.write(
        profiles.parse(AZURE_SQL + "dbt: {profile: p, connection: sql, schema: dbo}"),
        RunDir(tmp_path),
    )
    env = {"AZPYTEST_SQL_HOST": "s.database.windows.net", "AZPYTEST_SQL_DATABASE": "app"}
    env |= {"AZPYTEST_LEGACY_USER": "sa", "AZPYTEST_LEGACY_PASSWORD": "x"}
    loaded = profiles.load_connections(tmp_path / "connections.yaml", env)
    sql = loaded["sql"]
    assert (sql.kind, sql.host, sql.port, sql.user, sql.auth, sql.password_env) == (
        "azure-sql",
        "s.database.windows.net",
        1433,
        None,
        "entra",
        None,
    )
    assert sql.scope == "https://database.windows.net/.default"
    assert sql.token_env == "AZPYTEST_SQL_TOKEN"
    with pytest.raises(profiles.ConnectionsError, match="uses auth: entra"):
        sql.password(env)
    assert loaded["legacy"].password(env) == "x"
    assert profiles.dbt_token(tmp_path / "connections.yaml") == (
        "AZPYTEST_SQL_TOKEN",
        "https://database.windows.net/.default",
    )


def test_dbt_token_is_none_for_a_password_target(tmp_path: Path) -> None:
    profiles.write(profiles.parse(EXAMPLE), RunDir(tmp_path))
    assert profiles.dbt_token(tmp_path / "connections.yaml") is None


def test_azure_sql_token_struct_byte_for_byte() -> None:
    assert profiles.azure_sql_token_struct("eyJ0") == (
        b"\x08\x00\x00\x00" + b"e\x00y\x00J\x000\x00"
    )
    token = "eyJhbGciOiJSUzI1NiJ9." * 50
    data = profiles.azure_sql_token_struct(token)
    assert struct.unpack("<I", data[:4])[0] == len(token) * 2 == len(data) - 4
    assert data[4:].decode("utf-16-le") == token


# ---------------------------------------------------------------------------- dbt's errors

CONNECTION_REFUSED = """\
01:32:30  Running with dbt=1.11.16
01:32:31  Concurrency: 4 threads (target='ci')
01:32:31  
01:32:31  Finished running  in 0 hours 0 minutes and 0.10 seconds (0.10s).
01:32:31  Encountered an error:
Database Error
  connection to server at "127.0.0.1", port 54569 failed: FATAL:  password authentication failed for user "app"
  
"""

MODEL_FAILED = """\
01:32:46  1 of 8 START seed file dbt_ci.customers .............................. [RUN]
01:32:46  Finished running 1 seed, 2 table models, 5 data tests in 0 hours 0 minutes and 0.96 seconds (0.96s).
01:32:46  
01:32:46  Completed with 1 error, 0 partial successes, and 0 warnings:
01:32:46  
01:32:46  Failure in model customers_by_country (models/customers_by_country.sql)
01:32:46    Database Error in model customers_by_country (models/customers_by_country.sql)
  column "nope" does not exist
  LINE 12:     select nope from "appdb"."dbt_ci"."stg_customers"
                      ^
  compiled code at /tmp/out/run/azpytest_demo/models/customers_by_country.sql
01:32:46  
01:32:46    compiled code at /tmp/out/compiled/azpytest_demo/models/customers_by_country.sql
01:32:46  
01:32:46  Done. PASS=4 WARN=0 ERROR=1 SKIP=3 NO-OP=0 TOTAL=8
"""


def test_error_lines_of_a_connection_failure() -> None:
    assert error_lines(CONNECTION_REFUSED) == (
        "Database Error",
        'connection to server at "127.0.0.1", port 54569 failed: FATAL:  password '
        'authentication failed for user "app"',
    )


def test_error_lines_of_a_failed_model() -> None:
    assert error_lines(MODEL_FAILED) == (
        "Failure in model customers_by_country (models/customers_by_country.sql)",
        "Database Error in model customers_by_country (models/customers_by_country.sql)",
        'column "nope" does not exist',
        'LINE 12:     select nope from "appdb"."dbt_ci"."stg_customers"',
        "compiled code at /tmp/out/run/azpytest_demo/models/customers_by_country.sql",
        "compiled code at /tmp/out/compiled/azpytest_demo/models/customers_by_country.sql",
    )


def test_error_lines_without_a_summary_take_the_error_and_its_details() -> None:
    output = (
        "01:00:00  Running with dbt=1.11.16\n"
        "01:00:01  Runtime Error in seed customers (seeds/customers.csv)\n"
        "  permission denied for schema dbt_ci\n"
        "01:00:01  Something else\n"
    )
    assert error_lines(output) == (
        "Runtime Error in seed customers (seeds/customers.csv)",
        "permission denied for schema dbt_ci",
    )
    assert error_lines("01:00:00  a\n01:00:00  b\n") == ("a", "b")

"""The database fixtures with pytester against a real PostgreSQL: a password connection, an
Entra-token connection (the server checks the token), and the dbt fixture."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from azpytest_sandbox import Sandbox
from azpytest_sandbox.postgres import TempPostgres

DBT_PROJECT = Path(__file__).parent.parent / "data" / "dbt_project"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(
            ("AZPYTEST_", "AZURE_", "ACTIONS_ID_TOKEN", "GITHUB_", "DBT_")
        ) or name in ("CI", "KUBECONFIG"):
            monkeypatch.delenv(name)
    return monkeypatch


def connections(path: Path, pg: Any, *, user: str, auth: str) -> Path:
    password = (
        "password: {env: AZPYTEST_MAIN_PASSWORD, secret: pg-password}" if auth == "password" else ""
    )
    path.write_text(
        textwrap.dedent(f"""
        connections:
          main:
            kind: postgres
            host: {pg.host}
            port: {pg.port}
            database: {pg.dbname}
            user: {user}
            auth: {auth}
            {password}
    """)
    )
    return path


def test_password_connection_and_failure_text(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, postgres: Any, tmp_path: Path
) -> None:
    clean_env.setenv(
        "AZPYTEST_CONNECTIONS",
        str(connections(tmp_path / "c.yaml", postgres, user="postgres", auth="password")),
    )
    clean_env.setenv("AZPYTEST_MAIN_PASSWORD", postgres.password)
    pytester.makepyfile(
        """
        def test_query(db_connection, pg_connection):
            assert db_connection.execute("select current_user").fetchone() == ("postgres",)
            assert pg_connection("main").execute("select 1").fetchone() == (1,)

        def test_unknown_name(pg_connection):
            pg_connection("warehouse")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*azpytest: no postgres connection named 'warehouse' (prepared: main)"]
    )


def test_entra_connection_gets_a_token_the_server_checks(
    pytester: pytest.Pytester,
    clean_env: pytest.MonkeyPatch,
    sandbox: Sandbox,
    postgres_bindir: Path,
    tmp_path: Path,
) -> None:
    role = "azpytest-ci"  # the sandbox app's name: the role its tokens log in as
    with TempPostgres(
        hba_lines=["host all postgres 127.0.0.1/32 scram-sha-256", sandbox.ldap_hba_line],
        bindir=postgres_bindir,
    ) as pg:
        with pg.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for name, value in sandbox.env.items():
            clean_env.setenv(name, value)
        clean_env.setenv("GITHUB_ACTIONS", "true")
        clean_env.setenv(
            "AZPYTEST_CONNECTIONS",
            str(connections(tmp_path / "c.yaml", pg, user=role, auth="entra")),
        )
        pytester.makepyfile(
            """
            def test_two_connections(pg_connection):
                for _ in range(2):
                    assert pg_connection().execute("select current_user").fetchone() == ("azpytest-ci",)
            """
        )
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=1)
    # A fresh token per connection, each checked by the server through the responder.
    binds = [e for e in sandbox.log.select(service="ldap") if e.status == 0]
    assert len(binds) == 2
    assert len([e for e in sandbox.log.select(service="entra", method="POST")]) >= 1


def test_dbt_fixture_builds_and_fails_with_dbts_own_error(
    pytester: pytest.Pytester,
    clean_env: pytest.MonkeyPatch,
    postgres: Any,
    tmp_path: Path,
    app_database: Any,
) -> None:
    dbname, user, password = app_database.name, app_database.user, app_database.password
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        textwrap.dedent(f"""
        azpytest_demo:
          target: ci
          outputs:
            ci:
              type: postgres
              host: {postgres.host}
              port: {postgres.port}
              dbname: {dbname}
              user: {user}
              password: "{{{{ env_var('AZPYTEST_MAIN_PASSWORD') }}}}"
              schema: dbt_ci
              threads: 2
    """)
    )
    shutil.copytree(DBT_PROJECT, pytester.path / "dbt_project")
    pytester.makeini("[pytest]\nazpytest_dbt_project = dbt_project\n")
    clean_env.setenv("DBT_PROFILES_DIR", str(profiles))
    clean_env.setenv("AZPYTEST_MAIN_PASSWORD", password)
    pytester.makepyfile(
        """
        def test_build(dbt):
            result = dbt.build()
            assert result.ok and set(result.statuses().values()) <= {"success", "pass"}

        def test_bad_select(dbt):
            dbt("run", "--select", "no_such_model_anywhere", "--fail-fast")
            dbt("compile", "--vars", "{not yaml")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*dbt compile --vars {not yaml failed (exit 2):*"])


def test_azure_sql_with_pyodbc_asked_for_but_missing_skips_saying_what_to_install(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connections:\n  sql:\n    kind: azure-sql\n    host: sql.example\n    database: app\n    auth: entra\n"
    )
    clean_env.setenv("AZPYTEST_CONNECTIONS", str(path))
    pytester.makepyfile(
        "def test_sql(azure_sql_connection):\n    azure_sql_connection(driver='pyodbc')\n"
    )
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*azpytest: azure_sql_connection: pyodbc is not installed (No module named 'pyodbc')"]
    )


def test_azure_sql_connection_on_pyodbc_asks_for_the_connections_own_scope(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pyodbc (optional; not installed here, nor any system ODBC driver) is a stand-in recording
    what the fixture hands it; the token comes from a conftest's azure_credential, which
    overrides the plugin's by name. The real driver's path: test_azure_sql.py."""
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent("""
        connections:
          gov:
            kind: azure-sql
            host: sql.example.usgovcloudapi.net
            database: app
            auth: entra
            scope: https://database.usgovcloudapi.net/.default
          public:
            kind: azure-sql
            host: sql.example.net
            database: app
            auth: entra
    """)
    )
    clean_env.setenv("AZPYTEST_CONNECTIONS", str(path))
    pytester.makeconftest(
        """
        import sys
        import types

        import pytest

        class Connection:
            def close(self):
                print("pyodbc connection closed")

        def connect(conn_str, attrs_before=None, timeout=None):
            token = attrs_before[1256][4:].decode("utf-16-le")
            print(f"pyodbc.connect({conn_str}) with token {token} in attribute 1256")
            return Connection()

        sys.modules["pyodbc"] = types.SimpleNamespace(
            drivers=lambda: ["ODBC Driver 18 for SQL Server"], connect=connect, Error=Exception
        )

        @pytest.fixture(scope="session")
        def azure_credential():
            class Credential:
                def get_token(self, scope):
                    print(f"get_token({scope})")
                    return types.SimpleNamespace(token="token-for-" + scope)
            return Credential()
        """
    )
    pytester.makepyfile(
        """
        def test_sql(azure_sql_connection):
            azure_sql_connection("gov", driver="pyodbc")
            azure_sql_connection("public", driver="pyodbc")
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*get_token(https://database.usgovcloudapi.net/.default)",
            "pyodbc.connect(Driver={ODBC Driver 18 for SQL Server};"
            "Server=tcp:sql.example.usgovcloudapi.net,1433;Database={app};Encrypt=yes) with "
            "token token-for-https://database.usgovcloudapi.net/.default in attribute 1256",
            "get_token(https://database.windows.net/.default)",
            "pyodbc.connect(Driver={ODBC Driver 18 for SQL Server};"
            "Server=tcp:sql.example.net,1433;Database={app};Encrypt=yes) with token "
            "token-for-https://database.windows.net/.default in attribute 1256",
            "*pyodbc connection closed",
            "pyodbc connection closed",
        ]
    )


def test_a_bad_plugin_variable_fails_with_one_line_naming_it(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, postgres: Any, tmp_path: Path
) -> None:
    clean_env.setenv(
        "AZPYTEST_CONNECTIONS",
        str(connections(tmp_path / "c.yaml", postgres, user="postgres", auth="password")),
    )
    clean_env.setenv("AZPYTEST_MAIN_PASSWORD", postgres.password)
    clean_env.setenv("AZPYTEST_ROLE_MINUTES", "six hours")
    pytester.makepyfile("def test_schema(pg_schema):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["azpytest: AZPYTEST_ROLE_MINUTES: 'six hours' is not a whole number"]
    )
    assert "ValueError" not in result.stdout.str()


def test_a_typo_of_the_debug_input_stops_pytest_with_one_line(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("AZPYTEST_DEBUG", "ture")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: azpytest: debug: 'ture' is not true or false"
    ]


def test_dbt_fixture_keeps_each_invocations_results_under_its_own_name(
    pytester: pytest.Pytester,
    clean_env: pytest.MonkeyPatch,
    postgres: Any,
    tmp_path: Path,
    app_database: Any,
) -> None:
    """build, then a run of a failing model: two result files, each its own invocation's."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        textwrap.dedent(f"""
        azpytest_demo:
          target: ci
          outputs:
            ci:
              type: postgres
              host: {postgres.host}
              port: {postgres.port}
              dbname: {app_database.name}
              user: {app_database.user}
              password: "{{{{ env_var('AZPYTEST_MAIN_PASSWORD') }}}}"
              schema: dbt_ci
              threads: 2
    """)
    )
    project = pytester.path / "dbt_project"
    shutil.copytree(DBT_PROJECT, project)
    (project / "models" / "broken.sql").write_text("select * from no_such_table_anywhere\n")
    pytester.makeini("[pytest]\nazpytest_dbt_project = dbt_project\n")
    clean_env.setenv("DBT_PROFILES_DIR", str(profiles))
    clean_env.setenv("AZPYTEST_MAIN_PASSWORD", app_database.password)
    pytester.makepyfile(
        """
        def test_build_then_run(dbt):
            dbt.build("--exclude", "broken")
            dbt.run("--select", "broken")
        """
    )
    junit = pytester.path / "out" / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    folder = (
        junit.parent
        / "artifacts"
        / "test_dbt_fixture_keeps_each_invocations_results_under_its_own_name.py"
        / "test_build_then_run"
    )
    kept = sorted(p.name for p in folder.iterdir() if p.name.startswith("dbt-"))
    assert kept == ["dbt-01-build-run_results.json", "dbt-02-run-run_results.json"]
    build = json.loads((folder / kept[0]).read_text())
    run = json.loads((folder / kept[1]).read_text())
    assert build["args"]["which"] == "build" and run["args"]["which"] == "run"
    assert {r["unique_id"]: r["status"] for r in run["results"]} == {
        "model.azpytest_demo.broken": "error"
    }
    assert "seed.azpytest_demo.customers" in {r["unique_id"] for r in build["results"]}
    assert app_database.password not in (folder / "dbt.log").read_text()

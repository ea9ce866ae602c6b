"""azure_sql_connection with Microsoft's mssql-python (the real driver, ODBC Driver 18)
against the sandbox's Azure SQL stand-in, which checks the job's Entra token as Azure SQL
does; the address comes from the vault's sql-host, sql-port and sql-database secrets."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from azpytest_sandbox import Sandbox


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "ACTIONS_ID_TOKEN", "GITHUB_")):
            monkeypatch.delenv(name)
    return monkeypatch


def _connections(path: Path, sandbox: Sandbox) -> Path:
    secrets = sandbox.scenario.vaults["kv-azpytest"].secrets
    host, port, database = (
        secrets[n].current.value for n in ("sql-host", "sql-port", "sql-database")
    )
    path.write_text(
        f"connections:\n  main:\n    kind: azure-sql\n    host: {host}\n    port: {port}\n"
        f"    database: {database}\n    auth: entra\n"
    )
    return path


def test_fixture_logs_in_with_the_jobs_token(
    pytester: pytest.Pytester,
    job_env: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    sandbox = make_sandbox()
    for name, value in sandbox.env.items():
        job_env.setenv(name, value)
    job_env.setenv("GITHUB_ACTIONS", "true")
    job_env.setenv("AZPYTEST_CONNECTIONS", str(_connections(tmp_path / "c.yaml", sandbox)))
    pytester.makepyfile(
        """
        def test_who(azure_sql_connection):
            cursor = azure_sql_connection().cursor()
            cursor.execute("SELECT SUSER_SNAME()")
            assert cursor.fetchall()[0][0] == "azpytest-ci"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    logins = [e for e in sandbox.log.select(service="sql", method="LOGIN")]
    assert [(e.path, e.status) for e in logins] == [("/appdb", 0)]

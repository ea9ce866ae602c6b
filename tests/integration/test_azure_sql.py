"""Azure SQL with Microsoft's mssql-python (the real driver, ODBC Driver 18 in its wheel)
against the sandbox's Azure SQL stand-in, which checks each login's Entra token as Azure SQL
does (signature, audience of the server's cloud, tenant, expiry, database users, firewall).

The stand-in listens on 127.0.0.1 as `localhost` (ODBC Driver 18 checks the certificate's DNS
names, and trusts the sandbox CA through SSL_CERT_FILE); the driver never goes through the
HTTPS proxy, so its connections are the runner's own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from azpytest_sandbox import Sandbox

Step = Callable[..., Any]
CLIENT_ID = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"  # the sandbox's default app, azpytest-ci
OBJECT_ID = "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e"
TENANT_ID = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
PUBLIC_SCOPE = "https://database.windows.net/.default"
GOV_SCOPE = "https://database.usgovcloudapi.net/.default"


def sql_server(name: str = "sql-azpytest", **fields: Any) -> dict[str, Any]:
    return {"name": name, "databases": [{"name": "appdb", "users": ["azpytest-ci"]}], **fields}


def connections(path: Path, sandbox: Sandbox, **extra: dict[str, Any]) -> Path:
    """A connections.yaml naming each stand-in as `<server name>` (its first database), plus
    `extra` connections (fields over the first server's)."""
    lines = ["connections:"]
    first = next(iter(sandbox.sql_servers))
    servers: dict[str, dict[str, Any]] = {name: {} for name in sandbox.sql_servers}
    for name, fields in {**servers, **extra}.items():
        server = sandbox.sql_server(fields.get("server", name if name in servers else first))
        values = {
            "kind": "azure-sql",
            "host": "localhost",
            "port": server.port,
            "database": next(iter(server.server.databases.values())).name,
            "auth": "entra",
            **{k: v for k, v in fields.items() if k != "server"},
        }
        lines += [f"  {name}:", *(f"    {k}: {v}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def suite(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


def audit(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry.get("source") == "broker"]


# A suite's own connection, as teams write it: DefaultAzureCredential (in CI: the token
# broker) and Microsoft's driver, the token in the ODBC access-token attribute.
OWN_CONNECTION = """
    import os
    import struct

    import mssql_python
    from azure.identity import DefaultAzureCredential

    SQL_COPT_SS_ACCESS_TOKEN = 1256
    credential = DefaultAzureCredential()


    def own_connection():
        token = credential.get_token("https://database.windows.net/.default").token
        raw = token.encode("utf-16-le")
        return mssql_python.connect(
            f"Server=tcp:localhost,{os.environ['SQL_PORT']};Database=appdb;Encrypt=yes",
            attrs_before={SQL_COPT_SS_ACCESS_TOKEN: struct.pack("<I", len(raw)) + raw},
        )


    def who(connection):
        cursor = connection.cursor()
        cursor.execute("SELECT SUSER_SNAME()")
        name = cursor.fetchall()[0][0]
        connection.close()
        return name
"""


PROFILES = """\
connections:
  app:
    kind: azure-sql
    host: {secret: sql-host}
    port: {secret: sql-port}
    database: {secret: sql-database}
    auth: entra
"""


def test_the_fixture_and_a_suites_own_default_azure_credential_log_in_as_the_app(
    tmp_path: Path, make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox({"sql_servers": [sql_server()]})
    stand_in = sandbox.sql_server()
    tests = (
        OWN_CONNECTION
        + """

    def test_fixture(azure_sql_connection):
        cursor = azure_sql_connection().cursor()
        cursor.execute("SELECT SUSER_SNAME()")
        assert cursor.fetchall()[0][0] == "azpytest-ci"
        cursor.execute("SELECT DB_NAME()")
        assert cursor.fetchall()[0][0] == "appdb"


    def test_own_credential():
        assert who(own_connection()) == "azpytest-ci"
    """
    )
    root = suite(tmp_path, {"test_sql.py": tests})
    # The azure-sql kind of the profiles input, its address read from the vault's metadata.
    prepared = actions_step(
        sandbox,
        "prepare",
        env={"AZPYTEST_KEY_VAULT": "kv-azpytest", "AZPYTEST_PROFILES": PROFILES},
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    result = actions_step(
        sandbox,
        "run",
        env={
            **prepared.env_file,
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "SQL_PORT": str(stand_in.port),
        },
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "2 passed" in result.stdout
    logins = sandbox.log.select(service="sql", method="LOGIN")
    assert [(e.path, e.status, e.who) for e in logins] == [("/appdb", 0, CLIENT_ID)] * 2
    # Both tokens were for the public cloud's database, the second through the broker.
    assert [claims(t)["aud"] for t in stand_in.tokens_seen] == ["https://database.windows.net"] * 2
    served = Counter(
        (e["resource"], e["outcome"]) for e in audit(Path(prepared.env_file["AZPYTEST_RUN_DIR"]))
    )
    assert served == {("https://database.windows.net", "fresh"): 1}
    # Each token the driver got was masked in the job's log, and nothing written holds one.
    masks = result.commands("add-mask")
    written = result.written()
    for token in stand_in.tokens_seen:
        assert token in masks
        assert token[:40] not in written and token[-40:] not in written


LONG_TESTS = """
    import time


    def test_twenty_seconds_of_new_connections(azure_sql_connection):
        deadline = time.monotonic() + 20
        opened = 0
        while time.monotonic() < deadline:
            for connection in (azure_sql_connection(), own_connection()):
                cursor = connection.cursor()
                cursor.execute("SELECT 1")
                assert cursor.fetchall()[0][0] == 1
            opened += 2
            time.sleep(1)  # pacing, not a timing assertion
        assert opened >= 20
"""


def test_new_connections_over_twenty_seconds_of_five_second_tokens_keep_working(
    tmp_path: Path, make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox(
        {"token_lifetime_s": 5, "github": {"token_lifetime_s": 3}, "sql_servers": [sql_server()]}
    )
    stand_in = sandbox.sql_server()
    root = suite(tmp_path, {"test_long.py": OWN_CONNECTION + LONG_TESTS})
    result = actions_step(
        sandbox,
        "run",
        env={
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "AZPYTEST_CONNECTIONS": str(connections(tmp_path / "c.yaml", sandbox)),
            "SQL_PORT": str(stand_in.port),
        },
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "1 passed" in result.stdout
    logins = sandbox.log.select(service="sql", method="LOGIN")
    assert len(logins) >= 20 and {e.status for e in logins} == {0}
    # The tokens were renewed along the way (each lives 5 s): never one expired at a login.
    issued = Counter(claims(t)["iat"] for t in set(stand_in.tokens_seen))
    assert len(issued) >= 4, issued
    for token in stand_in.tokens_seen:
        assert token in result.commands("add-mask")


# ---------------------------------------------------------------------------- refusals


def run_fixture_tests(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    sandbox: Sandbox,
    connections_file: Path,
    body: str,
    **env: str,
) -> pytest.RunResult:
    """The plugin's fixtures in CI mode (the job's GitHub OIDC credential) in a subprocess."""
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "ACTIONS_ID_TOKEN", "GITHUB_", "IDENTITY_")):
            monkeypatch.delenv(name)
    for name, value in {**sandbox.env, **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("AZPYTEST_CONNECTIONS", str(connections_file))
    pytester.makepyfile(textwrap.dedent(body))
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")


def failure_text(result: pytest.RunResult) -> str:
    """The failure's text as pytest shows it (pytest.fail without a traceback)."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith("_____")) + 1
    end = next(
        i for i, line in enumerate(lines) if line.startswith(("-----", "=====")) and i > start
    )
    return "\n".join(lines[start:end]).strip("\n")


def test_an_app_that_is_not_a_database_user_gets_the_18456_diagnosis(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    server = sql_server(databases=[{"name": "appdb", "users": ["someone-else"]}])
    sandbox = make_sandbox({"sql_servers": [server]})
    result = run_fixture_tests(
        pytester,
        monkeypatch,
        sandbox,
        connections(tmp_path / "c.yaml", sandbox),
        "def test_sql(azure_sql_connection):\n    azure_sql_connection()\n",
    )
    result.assert_outcomes(failed=1)
    assert failure_text(result) == textwrap.dedent(f"""\
        Azure SQL localhost refused the login to database 'appdb': error 18456, Login failed for user '<token-identified principal>'.

        Likely cause: the token is valid but its identity is not a user of the database (Azure SQL only lets in Entra principals created in the database).

          server             localhost
          database           appdb
          client id (appid)  {CLIENT_ID}
          object id (oid)    {OBJECT_ID}
          display name       azpytest-ci
          tenant (tid)       {TENANT_ID}

        Fix:
          Connected to 'appdb' as the server's Microsoft Entra admin, run:

          ```sql
          CREATE USER [azpytest-ci] FROM EXTERNAL PROVIDER;
          ALTER ROLE db_datareader ADD MEMBER [azpytest-ci];
          ```

          (add db_datawriter or db_ddladmin as the tests need).""")
    assert [e.status for e in sandbox.log.select(service="sql", method="LOGIN")] == [18456]


def test_a_firewall_that_excludes_loopback_gets_the_40615_diagnosis(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    rule = {"name": "office", "start": "203.0.113.0", "end": "203.0.113.255"}
    sandbox = make_sandbox({"sql_servers": [sql_server(firewall=[rule])]})
    result = run_fixture_tests(
        pytester,
        monkeypatch,
        sandbox,
        connections(tmp_path / "c.yaml", sandbox),
        "def test_sql(azure_sql_connection):\n    azure_sql_connection()\n",
    )
    result.assert_outcomes(failed=1)
    assert (
        failure_text(result)
        == textwrap.dedent("""\
        Azure SQL localhost refused the connection: error 40615, the client with IP address 127.0.0.1 is not allowed to access the server.

        Likely cause: no firewall rule of server 'sql-azpytest' covers this runner's address 127.0.0.1.

          server          localhost
          runner address  127.0.0.1

        Fix:
          Allow the address (Owner or SQL Server Contributor on the server):

          ```sh
          az sql server firewall-rule create --resource-group <resource-group> --server sql-azpytest --name azpytest-runner --start-ip-address 127.0.0.1 --end-ip-address 127.0.0.1
          ```

          GitHub-hosted runners get a different address for every job: a fixed rule works only for a self-hosted runner (or a larger runner with static IP addresses); otherwise create the rule in the job before the tests and delete it after them (`if: always()`), or reach the server through a private endpoint.""")
    )
    assert [e.status for e in sandbox.log.select(service="sql", method="LOGIN")] == [40615]


def test_a_database_that_is_not_available_gets_the_40613_diagnosis(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    paused = {"name": "appdb", "users": ["azpytest-ci"], "available": False}
    sandbox = make_sandbox({"sql_servers": [sql_server(databases=[paused])]})
    result = run_fixture_tests(
        pytester,
        monkeypatch,
        sandbox,
        connections(tmp_path / "c.yaml", sandbox),
        "def test_sql(azure_sql_connection):\n    azure_sql_connection()\n",
    )
    result.assert_outcomes(failed=1)
    assert failure_text(result) == textwrap.dedent("""\
        Azure SQL localhost: error 40613, database 'appdb' is not currently available.

        Likely cause: the database is paused (serverless auto-pause), being scaled, failed over or under maintenance.

        Fix:
          Retry the connection after a minute; a serverless database resumes on the retry.""")
    assert [e.status for e in sandbox.log.select(service="sql", method="LOGIN")] == [40613]


def test_the_us_government_cloud_asks_for_its_own_database_scope(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    """cloud: AzureUSGovernment gives the fixture usgovcloudapi.net's database scope, which
    the government server takes; a connection that asks for the public scope is refused."""
    sandbox = make_sandbox({"sql_servers": [sql_server("sql-gov", cloud="AzureUSGovernment")]})
    path = connections(
        tmp_path / "c.yaml", sandbox, public_scope={"server": "sql-gov", "scope": PUBLIC_SCOPE}
    )
    result = run_fixture_tests(
        pytester,
        monkeypatch,
        sandbox,
        path,
        """
        def test_gov(azure_sql_connection):
            cursor = azure_sql_connection("sql-gov").cursor()
            cursor.execute("SELECT SUSER_SNAME()")
            assert cursor.fetchall()[0][0] == "azpytest-ci"

        def test_public_scope(azure_sql_connection):
            azure_sql_connection("public_scope")
        """,
        AZPYTEST_CLOUD="AzureUSGovernment",
    )
    result.assert_outcomes(passed=1, failed=1)
    tokens = sandbox.sql_server().tokens_seen
    assert [claims(t)["aud"] for t in tokens] == [
        "https://database.usgovcloudapi.net",
        "https://database.windows.net",
    ]
    assert (
        failure_text(result)
        == textwrap.dedent(f"""\
        Azure SQL localhost refused the token: error 18456, Incorrect or invalid token (the token is for https://database.windows.net).

        Likely cause: the token was asked for scope {PUBLIC_SCOPE}, but this server takes tokens for {GOV_SCOPE} (the database resource of its cloud, in its own tenant).

          scope asked        {PUBLIC_SCOPE}
          scope expected     {GOV_SCOPE}
          client id (appid)  {CLIENT_ID}
          object id (oid)    {OBJECT_ID}
          display name       azpytest-ci
          tenant (tid)       {TENANT_ID}

        Fix:
          Set the action's `cloud` input to the server's cloud (AzureUSGovernment for *.database.usgovcloudapi.net, AzureChinaCloud for *.database.chinacloudapi.cn), or give the connection `scope: {GOV_SCOPE}` in the profiles input.""")
    )


def test_the_servers_certificate_is_checked_against_the_trusted_roots(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
) -> None:
    """Encrypt on and no TrustServerCertificate: with the system's roots only (no sandbox CA)
    the driver refuses the stand-in's certificate before any login is sent."""
    system_roots = "/etc/ssl/certs/ca-certificates.crt"
    sandbox = make_sandbox({"sql_servers": [sql_server()]})
    result = run_fixture_tests(
        pytester,
        monkeypatch,
        sandbox,
        connections(tmp_path / "c.yaml", sandbox),
        "def test_sql(azure_sql_connection):\n    azure_sql_connection()\n",
        SSL_CERT_FILE=system_roots,
    )
    result.assert_outcomes(failed=1)
    assert (
        failure_text(result)
        == textwrap.dedent(f"""\
        Azure SQL localhost: the driver did not trust the server's TLS certificate (certificate verify failed: unable to get local issuer certificate).

        Likely cause: ODBC Driver 18 checks the server's certificate against OpenSSL's trusted roots (SSL_CERT_FILE, else the system's): a proxy that intercepts TLS, a CA missing from that store, or a host name the certificate does not name (use the server's <name>.database.windows.net name, not an IP address).

          server         localhost
          SSL_CERT_FILE  {system_roots}

        Fix:
          Add the CA to the system's trusted roots (`update-ca-certificates`) or point SSL_CERT_FILE at a bundle that holds it. Do not set TrustServerCertificate=yes: it accepts any server, and the job's token with it.""")
    )
    assert sandbox.log.select(service="sql", method="LOGIN") == []


# ---------------------------------------------------------------------------- the driver


def test_without_libltdl7_the_fixture_says_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """libltdl.so.7 hidden in a private mount namespace (an empty file bound over it): the
    driver cannot load, and the test says so in one line; skipped locally, failed in CI."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is part of every Debian system"
    library = Path("/usr/lib/x86_64-linux-gnu/libltdl.so.7").resolve()
    assert library.exists(), "make bootstrap installs libltdl7"
    path = tmp_path / "c.yaml"
    path.write_text(
        "connections:\n  main:\n    kind: azure-sql\n    host: localhost\n    database: app\n"
        "    auth: entra\n"
    )
    monkeypatch.setenv("AZPYTEST_CONNECTIONS", str(path))
    monkeypatch.setenv("COLUMNS", "400")  # the short summary line whole
    pytester.makepyfile("def test_sql(azure_sql_connection):\n    azure_sql_connection()\n")
    hint = (
        "azpytest: azure_sql_connection: mssql-python cannot load its ODBC driver: libltdl.so.7 "
        "is missing; install it with `sudo apt-get install -y libltdl7` (Debian, Ubuntu); "
        "pyodbc is not installed (No module named 'pyodbc')"
    )
    for ci, outcome in (("", "SKIPPED"), ("true", "FAILED")):
        monkeypatch.setenv("CI", ci)
        command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-rsf"]
        hide = f'mount --bind /dev/null "{library}" && exec "$@"'
        result = subprocess.run(
            [unshare, "--mount", "sh", "-c", hide, "sh", *command],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        summary = [line for line in result.stdout.splitlines() if line.startswith(outcome)]
        assert len(summary) == 1, result.stdout + result.stderr
        assert hint in summary[0], summary[0]

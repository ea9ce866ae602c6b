"""Database isolation against a real PostgreSQL: a schema and a least-privilege role per run,
a rollback per test, nothing left behind — and two runs at once never meet."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from azpytest import db

SESSION_TEST = """
import os, time
from pathlib import Path

MARKER = os.environ["MARKER"]

def wait_for(path):
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"the other session never reached {path}"
        time.sleep(0.05)

def test_own_rows_only(pg_schema, pg_transaction):
    conn = pg_transaction
    conn.execute("CREATE TABLE items (marker text)")
    conn.execute("INSERT INTO items VALUES (%s)", (MARKER,))
    Path(os.environ["ME"]).touch()
    wait_for(Path(os.environ["OTHER"]))  # both sessions hold their table now
    assert conn.execute("SELECT marker FROM items").fetchall() == [(MARKER,)]
    seen = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'items'").fetchone()
    assert seen == (1,)
    assert conn.execute("SELECT count(*) FROM seeded").fetchone() == (2,)  # the migrations ran
    assert conn.execute("SELECT current_user").fetchone()[0] == pg_schema.role.name

def test_previous_test_was_rolled_back(pg_transaction):
    assert pg_transaction.execute("SELECT to_regclass('items')").fetchone() == (None,)
    assert pg_transaction.execute("SELECT count(*) FROM seeded").fetchone() == (2,)
"""


@pytest.fixture
def connections_file(tmp_path: Path, postgres: Any) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(
        textwrap.dedent(f"""
        connections:
          main:
            kind: postgres
            host: {postgres.host}
            port: {postgres.port}
            database: {postgres.dbname}
            user: {postgres.user}
            auth: password
            password: {{env: AZPYTEST_MAIN_PASSWORD, secret: pg-password}}
    """)
    )
    return path


def session_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    (folder / "migrations").mkdir(parents=True)
    (folder / "migrations" / "001_table.sql").write_text("CREATE TABLE seeded (n int);")
    (folder / "migrations" / "002_rows.sql").write_text(
        "INSERT INTO seeded VALUES (1); INSERT INTO seeded VALUES (2);"
    )
    (folder / "pytest.ini").write_text("[pytest]\nazpytest_migrations = migrations\n")
    (folder / "test_isolation.py").write_text(SESSION_TEST)
    return folder


def catalog(postgres: Any) -> dict[str, list[Any]]:
    with postgres.connect() as conn:
        return {
            "schemas": conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'azpytest_%'"
            ).fetchall(),
            "roles": conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'azpytest_%'"
            ).fetchall(),
            "sessions": conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE usename LIKE 'azpytest_%'"
            ).fetchall(),
        }


def test_two_sessions_at_once_see_nothing_of_each_other(
    tmp_path: Path, postgres: Any, connections_file: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZPYTEST_", "PYTEST_"))}
    env.update(
        {"AZPYTEST_CONNECTIONS": str(connections_file), "AZPYTEST_MAIN_PASSWORD": postgres.password}
    )
    flags = tmp_path / "flags"
    flags.mkdir()
    runs = []
    for me, other in (("a", "b"), ("b", "a")):
        folder = session_dir(tmp_path, me)
        runs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                cwd=folder,
                env={
                    **env,
                    "MARKER": f"row of {me}",
                    "ME": str(flags / me),
                    "OTHER": str(flags / other),
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("2 passed" in out for out in outputs), outputs
    assert catalog(postgres) == {"schemas": [], "roles": [], "sessions": []}


@pytest.fixture
def admin(postgres: Any) -> Any:
    conn = postgres.connect(autocommit=True)
    yield conn
    conn.close()


def test_run_role_is_least_privilege(postgres: Any, admin: Any) -> None:
    schema = db.run_name("priv")
    db.create_schema(admin, schema)
    role = db.create_run_role(admin, schema, schema, dt.timedelta(minutes=5))
    try:
        flags = admin.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolvaliduntil "
            "FROM pg_roles WHERE rolname = %s",
            (role.name,),
        ).fetchone()
        assert flags[:4] == (False, False, False, True)
        assert (
            dt.timedelta(minutes=4)
            < flags[4] - dt.datetime.now(dt.timezone.utc)
            <= dt.timedelta(minutes=5)
        )
        with psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            dbname=postgres.dbname,
            user=role.name,
            password=role.password,
            autocommit=True,
        ) as conn:
            conn.execute("CREATE TABLE mine (n int)")  # in its schema (its search_path)
            assert conn.execute(
                "SELECT schemaname FROM pg_tables WHERE tablename = 'mine'"
            ).fetchone() == (schema,)
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"
            ):
                conn.execute("CREATE TABLE public.theirs (n int)")
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege, match="permission denied to create role"
            ):
                conn.execute("CREATE ROLE sneaky")
    finally:
        db.drop_run(admin, schema, role.name)
    assert admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role.name,)
    ).fetchone() == (0,)


def test_run_role_cannot_log_in_after_valid_until(postgres: Any, admin: Any) -> None:
    schema = db.run_name("expired")
    db.create_schema(admin, schema)
    role = db.create_run_role(admin, schema, schema, dt.timedelta(seconds=-1))
    try:
        with pytest.raises(
            psycopg.OperationalError, match=f'password authentication failed for user "{role.name}"'
        ):
            psycopg.connect(
                host=postgres.host,
                port=postgres.port,
                dbname=postgres.dbname,
                user=role.name,
                password=role.password,
                connect_timeout=10,
            )
    finally:
        db.drop_run(admin, schema, role.name)

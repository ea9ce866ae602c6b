"""Database isolation for a test run: a schema of its own, migrations applied once, an
optional least-privilege login role, and a rollback per test. Everything it creates is named
after the run and dropped at the end, so two runs against one server never meet.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

_IDENT = re.compile(r"[^a-z0-9_]+")


def run_name(run_id: str | None = None) -> str:
    """`azpytest_<run>_<random>`: a valid, unquoted PostgreSQL identifier unique to the run."""
    stem = _IDENT.sub("_", (run_id or "local").lower()).strip("_")[:30] or "run"
    return f"azpytest_{stem}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunRole:
    name: str
    password: str
    valid_until: dt.datetime


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")


def apply_migrations(conn: psycopg.Connection[Any], schema: str, folder: Path) -> list[str]:
    """Run every `*.sql` file of `folder` in name order inside `schema`, in one transaction."""
    files = sorted(p for p in folder.glob("*.sql") if p.is_file())
    with conn.transaction():
        conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        for path in files:
            conn.execute(path.read_text(encoding="utf-8"))
    return [p.name for p in files]


def can_create_roles(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return bool(row and row[0])


def create_run_role(
    conn: psycopg.Connection[Any], schema: str, name: str, lifetime: dt.timedelta
) -> RunRole:
    """A login role that can use and create in the run's schema and nothing else, valid only
    for the job's time."""
    from psycopg import sql

    password = secrets.token_urlsafe(24)
    until = dt.datetime.now(dt.timezone.utc) + lifetime
    role, where = sql.Identifier(name), sql.Identifier(schema)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                "NOREPLICATION PASSWORD {} VALID UNTIL {}"
            ).format(role, sql.Literal(password), sql.Literal(until.isoformat()))
        )
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(where, role))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA {} TO {}").format(where, role))
        conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA {} TO {}").format(where, role))
        conn.execute(sql.SQL("ALTER ROLE {} SET search_path TO {}").format(role, where))
    return RunRole(name=name, password=password, valid_until=until)


def drop_run(conn: psycopg.Connection[Any], schema: str, role: str | None) -> None:
    """Drop the schema and the role, ending the role's sessions first."""
    from psycopg import sql

    with conn.transaction():
        if role:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = %s AND pid <> pg_backend_pid()",
                (role,),
            )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        if role:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@contextmanager
def rolled_back(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """One test's changes, undone at the end whatever happened."""
    tx = conn.transaction(force_rollback=True)
    with tx:
        yield conn

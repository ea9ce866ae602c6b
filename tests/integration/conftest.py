"""Fixtures for the integration tests: a real, throwaway PostgreSQL server."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql

from azpytest_sandbox.postgres import PostgresUnavailable, TempPostgres, find_bindir


def _missing(reason: str) -> NoReturn:
    """Fail on CI (the binaries must be there), skip on a developer machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but PostgreSQL is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_bindir() -> Path:
    """The PostgreSQL binaries folder; skips (or fails on CI) when PostgreSQL is absent."""
    try:
        return find_bindir()
    except PostgresUnavailable as exc:
        _missing(str(exc))


@pytest.fixture(scope="session")
def postgres(postgres_bindir: Path) -> Iterator[TempPostgres]:
    """A started PostgreSQL server shared by the session; stopped and deleted at the end."""
    pg = TempPostgres(bindir=postgres_bindir)
    try:
        pg.start()
    except PostgresUnavailable as exc:
        _missing(str(exc))
    try:
        yield pg
    finally:
        pg.stop()


@dataclass(frozen=True)
class AppDatabase:
    """A database of its own and a login role owning it, on the session's PostgreSQL."""

    pg: TempPostgres
    name: str
    user: str
    password: str

    def admin(self) -> psycopg.Connection[Any]:
        return self.pg.connect(dbname=self.name, autocommit=True)


@pytest.fixture
def app_database(postgres: TempPostgres) -> Iterator[AppDatabase]:
    suffix = uuid.uuid4().hex[:10]
    db = AppDatabase(postgres, f"app_{suffix}", f"app_{suffix}", secrets.token_urlsafe(18))
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(db.user), sql.Literal(db.password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(db.name), sql.Identifier(db.user)
            )
        )
    yield db
    with postgres.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name))
        )
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.user)))

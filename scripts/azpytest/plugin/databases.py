"""The prepared database connections: PostgreSQL (psycopg 3) and Azure SQL (mssql-python, or
pyodbc), with the job's Entra token as the password where the connection says `auth: entra`;
the run's own PostgreSQL schema and a rolled-back transaction in it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from azpytest import errors
from azpytest.clouds import CLOUDS, PUBLIC, Cloud
from azpytest.plugin.common import fail_diagnosis, setting, skip_or_fail

if TYPE_CHECKING:
    import psycopg

    from azpytest.db import RunRole
    from azpytest.identity import Identity
    from azpytest.profiles import Connection

    PgConnection = psycopg.Connection[Any]

# A DB-API connection of mssql-python or pyodbc (both optional).
SqlConnection = Any


@pytest.fixture(scope="session")
def azpytest_connections() -> dict[str, Connection]:
    from azpytest import profiles

    path = setting("connections")
    if not path:
        skip_or_fail(errors.NO_CONNECTIONS)
    try:
        return profiles.load_connections(Path(path), cloud=_cloud())
    except (OSError, ValueError) as exc:
        pytest.fail(errors.connections_unreadable(path, exc), pytrace=False)


def _pick(connections: dict[str, Connection], name: str | None, kind: str) -> Connection:
    candidates = {n: c for n, c in connections.items() if c.kind == kind}
    if name is None:
        if len(candidates) != 1:
            pytest.fail(errors.name_the_connection(kind, candidates), pytrace=False)
        return next(iter(candidates.values()))
    if name not in candidates:
        pytest.fail(errors.no_such_connection(kind, name, candidates), pytrace=False)
    return candidates[name]


def _token_scope(spec: Connection) -> str:
    """The scope of an entra connection's token: its own (profiles fills in the cloud's
    default when the user gives none)."""
    return spec.scope or _cloud().token_scope(spec.kind)


def _pg_password(spec: Connection, credential: Callable[[], Identity]) -> str:
    if spec.auth == "entra":
        try:
            # A fresh token for every new connection: a long session never uses an old one.
            return credential().get_token(_token_scope(spec)).token
        except errors.Diagnosis as exc:
            fail_diagnosis(exc)
    return spec.password()


@pytest.fixture
def pg_connection(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[Callable[..., PgConnection]]:
    """`pg_connection(name=None, **kwargs)`: a new psycopg 3 connection to a prepared
    PostgreSQL connection, closed after the test."""
    import psycopg

    opened: list[PgConnection] = []

    def credential() -> Identity:
        return request.getfixturevalue("azure_credential")  # type: ignore[no-any-return]

    def connect(name: str | None = None, **kwargs: Any) -> PgConnection:
        spec = _pick(azpytest_connections, name, "postgres")
        params: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port,
            "dbname": spec.database,
            "user": spec.user,
            "password": _pg_password(spec, credential),
            "connect_timeout": 15,
            **({"sslmode": spec.sslmode} if spec.sslmode else {}),
        }
        params.update(kwargs)
        conn = psycopg.connect(**params)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def db_connection(pg_connection: Callable[..., PgConnection]) -> PgConnection:
    """A psycopg connection to the one prepared PostgreSQL connection."""
    return pg_connection()


@pytest.fixture
def azure_sql_connection(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[Callable[..., SqlConnection]]:
    """`azure_sql_connection(name=None, driver=None, **kwargs)`: a new DB-API connection to a
    prepared azure-sql connection, closed after the test. Microsoft's mssql-python (or pyodbc
    with driver="pyodbc"); an entra connection logs in with a token fetched for it, for the
    connection's scope; a refused login fails the test with the diagnosis."""
    from azpytest import azuresql

    opened: list[SqlConnection] = []

    def token_for(scope: str) -> str:
        # A current token for every new connection (the job's credential renews it and masks
        # it in the log): a long session never uses an old one.
        credential = request.getfixturevalue("azure_credential")
        return str(credential.get_token(scope).token)

    def connect(name: str | None = None, driver: str | None = None, **kwargs: Any) -> SqlConnection:
        spec = _pick(azpytest_connections, name, "azure-sql")
        entra = spec.auth == "entra"
        target = azuresql.Target(
            host=spec.host,
            port=spec.port or 1433,
            database=spec.database,
            scope=_token_scope(spec) if entra else None,
            user=None if entra else spec.user,
            password=None if entra else spec.password(),
        )
        missing: str | None = None
        refused: errors.Diagnosis | None = None
        try:
            conn = azuresql.connect(target, token_for, cloud=_cloud(), driver=driver, **kwargs)
        except azuresql.DriverMissing as exc:
            missing = str(exc)
        except errors.Diagnosis as exc:
            refused = exc
        # Outside the except blocks: the test's failure shows the diagnosis alone.
        if missing is not None:
            skip_or_fail(missing)
        if refused is not None:
            fail_diagnosis(refused)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def _cloud() -> Cloud:
    return CLOUDS.get((setting("cloud") or "").lower(), PUBLIC)


@dataclass
class RunSchema:
    """The run's own schema (and login role, where the connection may create roles)."""

    name: str
    connection: Connection
    role: RunRole | None = None
    migrations: list[str] = field(default_factory=list)
    _connect: Callable[..., PgConnection] | None = None

    def connect(self, **kwargs: Any) -> PgConnection:
        """A new connection working in the schema (as the run's role when there is one)."""
        assert self._connect is not None
        if self.role is not None:
            kwargs = {"user": self.role.name, "password": self.role.password, **kwargs}
        return self._connect(options=f"-c search_path={self.name}", **kwargs)


@pytest.fixture(scope="session")
def pg_schema(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[RunSchema]:
    """A schema unique to this run, migrations applied once, dropped at the end; with a
    least-privilege login role valid for the job's time where the connection may create
    roles (AZPYTEST_ROLE_MINUTES, default 360)."""
    import psycopg

    from azpytest import db

    spec = _pick(azpytest_connections, setting("pg-connection"), "postgres")
    minutes = int(setting("role-minutes") or 360)  # checked before anything is created

    def credential() -> Identity:
        return request.getfixturevalue("azure_credential")  # type: ignore[no-any-return]

    def connect(**kwargs: Any) -> PgConnection:
        params: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port,
            "dbname": spec.database,
            "user": spec.user,
            "connect_timeout": 15,
        }
        if "password" not in kwargs:
            params["password"] = _pg_password(spec, credential)
        if spec.sslmode:
            params["sslmode"] = spec.sslmode
        params.update(kwargs)
        return psycopg.connect(**params, autocommit=True)

    name = db.run_name(os.environ.get("GITHUB_RUN_ID"))
    admin = connect()
    schema = RunSchema(name=name, connection=spec, _connect=connect)
    try:
        db.create_schema(admin, name)
        folder = request.config.getini("azpytest_migrations") or setting("migrations")
        if folder:
            base = Path(str(request.config.rootpath))
            schema.migrations = db.apply_migrations(admin, name, base / str(folder))
        if db.can_create_roles(admin):
            schema.role = db.create_run_role(admin, name, name, dt.timedelta(minutes=minutes))
        yield schema
    finally:
        db.drop_run(admin, name, schema.role.name if schema.role else None)
        admin.close()


@pytest.fixture
def pg_transaction(pg_schema: RunSchema) -> Iterator[PgConnection]:
    """A connection in the run's schema inside a transaction rolled back after the test."""
    from azpytest import db

    conn = pg_schema.connect()
    try:
        with db.rolled_back(conn):
            yield conn
    finally:
        conn.close()

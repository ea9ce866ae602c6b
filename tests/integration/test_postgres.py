"""The throwaway PostgreSQL server: SCRAM logins, expiry, cleanup, isolation, loopback only."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from azpytest_sandbox import postgres as pgmod
from azpytest_sandbox.postgres import PostgresStartError, TempPostgres

# libpq >= 16 can insist on SCRAM, so a silent fallback to another method would fail the test.
SCRAM_ONLY: dict[str, Any] = (
    {"require_auth": "scram-sha-256"} if psycopg.pq.version() >= 160000 else {}
)


@pytest.fixture
def role(postgres: TempPostgres) -> Iterator[list[str]]:
    """Names of roles a test creates; dropped afterwards."""
    names: list[str] = []
    yield names
    with postgres.connect(autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_scram_login_with_the_right_password(postgres: TempPostgres) -> None:
    with postgres.connect(**SCRAM_ONLY) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), inet_server_addr()::text,"
            " inet_server_port(), rolpassword LIKE 'SCRAM-SHA-256$%'"
            " FROM pg_authid WHERE rolname = current_user"
        ).fetchone()
    assert row == ("postgres", "postgres", "127.0.0.1/32", postgres.port, True)


def test_wrong_password_is_refused(postgres: TempPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres.connect(password=postgres.password + "x")


def test_no_password_is_refused(postgres: TempPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user="postgres",
            dbname="postgres",
            password="",
            passfile=os.devnull,
        )


def test_unix_socket_also_needs_the_password(postgres: TempPostgres) -> None:
    assert postgres.folder is not None
    folder = str(postgres.folder)
    with psycopg.connect(
        host=folder,
        port=postgres.port,
        user="postgres",
        password=postgres.password,
        dbname="postgres",
        **SCRAM_ONLY,
    ) as conn:
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=folder, port=postgres.port, user="postgres", password="wrong", dbname="postgres"
        )


def test_pg_hba_has_only_scram_rules(postgres: TempPostgres) -> None:
    with postgres.connect() as conn:
        rules = conn.execute(
            "SELECT type, database, user_name, address, auth_method, error"
            " FROM pg_hba_file_rules ORDER BY line_number"
        ).fetchall()
    assert rules == [
        ("local", ["all"], ["all"], None, "scram-sha-256", None),
        ("host", ["all"], ["all"], "127.0.0.1", "scram-sha-256", None),
    ]


def test_valid_until_in_the_past_blocks_login(postgres: TempPostgres, role: list[str]) -> None:
    role += ["expired", "current"]
    with postgres.connect(autocommit=True) as conn:
        conn.execute("CREATE ROLE expired LOGIN PASSWORD 'pw-expired' VALID UNTIL '2000-01-01'")
        conn.execute("CREATE ROLE current LOGIN PASSWORD 'pw-current' VALID UNTIL 'infinity'")
    with postgres.connect(user="current", password="pw-current") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("current",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres.connect(user="expired", password="pw-expired")


def test_conninfo_quotes_odd_passwords(postgres: TempPostgres, role: list[str]) -> None:
    odd = "it's a \\ p@ss word="
    role.append("odd")
    with postgres.connect(autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE odd LOGIN PASSWORD {}").format(odd))
    with psycopg.connect(postgres.conninfo(user="odd", password=odd)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("odd",)


def test_env_works_for_psql(postgres: TempPostgres, postgres_bindir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(postgres.env())
    out = subprocess.run(
        [
            str(postgres_bindir / "psql"),
            "-XtAc",
            "SELECT current_user || '@' || inet_server_port()",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert out == f"postgres@{postgres.port}"
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _listening(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_listens_on_loopback_ipv4_only(postgres: TempPostgres) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp")
    assert _listening(postgres.port) == {"127.0.0.1"}
    with postgres.connect() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    # 127.0.0.2 is loopback too on Linux, but the server is bound to 127.0.0.1 alone.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", postgres.port), timeout=5).close()


def test_folder_owned_by_postgres_and_removed_on_stop(postgres_bindir: Path) -> None:
    pg = TempPostgres(bindir=postgres_bindir)
    try:
        pg.start()
        assert pg.folder is not None
        folder, port = pg.folder, pg.port
        assert folder.parent == Path("/tmp") and folder.name.startswith("azpytest-pg-")
        if os.geteuid() == 0:
            import pwd

            uid = pwd.getpwnam("postgres").pw_uid
            assert folder.stat().st_uid == uid
            assert pg.datadir.stat().st_uid == uid
        assert stat.S_IMODE(pg.datadir.stat().st_mode) == 0o700
        assert not (folder / "pwfile").exists(), "the password file outlived initdb"
        assert pg.start_seconds is not None and pg.start_seconds < 30
        with pg.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()
    assert not folder.exists()
    assert not pg.started
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    pg.stop()  # idempotent


def test_context_manager_cleans_up(postgres_bindir: Path) -> None:
    with TempPostgres(bindir=postgres_bindir) as pg:
        assert pg.folder is not None
        folder = pg.folder
        assert pg.started
    assert not folder.exists()
    with pytest.raises(RuntimeError, match="not started"):
        pg.dsn  # noqa: B018


def test_two_servers_at_once(postgres: TempPostgres, postgres_bindir: Path) -> None:
    with TempPostgres(bindir=postgres_bindir) as other:
        assert other.port != postgres.port
        assert other.password != postgres.password
        with postgres.connect(autocommit=True) as a, other.connect(autocommit=True) as b:
            a.execute("CREATE TABLE only_in_first (x int)")
            try:
                assert a.execute("SELECT inet_server_port()").fetchone() == (postgres.port,)
                assert b.execute("SELECT inet_server_port()").fetchone() == (other.port,)
                assert b.execute("SELECT to_regclass('only_in_first')").fetchone() == (None,)
            finally:
                a.execute("DROP TABLE only_in_first")
        # Each server only knows its own superuser password.
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            other.connect(password=postgres.password)


def test_hba_lines_come_first(postgres_bindir: Path) -> None:
    line = "host all blocked 127.0.0.1/32 reject"
    with TempPostgres(bindir=postgres_bindir, hba_lines=[line]) as pg:
        with pg.connect(autocommit=True) as conn:
            conn.execute("CREATE ROLE blocked LOGIN PASSWORD 'pw'")
            first = conn.execute(
                "SELECT auth_method, user_name FROM pg_hba_file_rules ORDER BY line_number LIMIT 1"
            ).fetchone()
        assert first == ("reject", ["blocked"])
        with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
            pg.connect(user="blocked", password="pw")


def test_failed_start_removes_the_folder(
    postgres_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)  # the module postgres.py uses
    pg = TempPostgres(bindir=postgres_bindir, hba_lines=["this is not a pg_hba line"])
    with pytest.raises(PostgresStartError, match="pg_hba"):
        pg.start()
    assert len(made) == 1
    assert not Path(made[0]).exists()
    assert pg.folder is None and not pg.started


def test_retries_when_the_port_is_taken(
    postgres_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        ports = iter([busy])
        real_free_port = pgmod._free_port
        monkeypatch.setattr(pgmod, "_free_port", lambda: next(ports, None) or real_free_port())
        with TempPostgres(bindir=postgres_bindir) as pg:
            assert pg.port != busy
            with pg.connect() as conn:
                assert conn.execute("SELECT inet_server_port()").fetchone() == (pg.port,)


_ABANDON = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("pg_under_test", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
pg = module.TempPostgres(bindir=sys.argv[1]).start()
print(pg.folder, flush=True)
if os.fork() == 0:
    sys.exit(0)  # a forked child's atexit must not stop the parent's server
os.wait()
with pg.connect() as conn:
    conn.execute("SELECT 1")
print("alive after fork", flush=True)
# no stop(): atexit has to clean up
"""


def test_atexit_stops_an_abandoned_server(postgres_bindir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _ABANDON, str(postgres_bindir), str(pgmod.__file__)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    folder, status = proc.stdout.splitlines()
    assert status == "alive after fork"
    assert folder.startswith("/tmp/azpytest-pg-")
    assert not Path(folder).exists()


def test_stop_kills_the_postmaster_when_pg_ctl_fails(
    postgres_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg = TempPostgres(bindir=postgres_bindir).start()
    try:
        pid = int((pg.datadir / "postmaster.pid").read_text().splitlines()[0])
        folder, port = pg.folder, pg.port
        real_run = TempPostgres._run

        def run(self: TempPostgres, args: list[str], **kwargs: Any) -> Any:
            if "stop" in args:
                raise subprocess.TimeoutExpired(args, 0)
            return real_run(self, args, **kwargs)

        monkeypatch.setattr(TempPostgres, "_run", run)
        pg.stop()
    finally:
        monkeypatch.undo()
        pg.stop()
    assert folder is not None and not folder.exists()
    assert not pgmod._alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

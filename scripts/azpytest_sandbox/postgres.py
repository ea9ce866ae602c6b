"""A throwaway PostgreSQL server on 127.0.0.1 for tests and demos.

``with TempPostgres() as pg:`` runs ``initdb`` in a fresh folder under /tmp, starts the server
on a free loopback port with SCRAM authentication and durability off, and deletes everything
on exit. As root, the server runs as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "INSTALL_HINT",
    "PostgresStartError",
    "PostgresUnavailable",
    "TempPostgres",
    "find_bindir",
]

INSTALL_HINT = "install PostgreSQL with: apt-get install -y postgresql"

_OS_USER = "postgres"
_START_ATTEMPTS = 3
_TIMEOUT_S = 90  # above pg_ctl's own 60 s wait


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the means to run them) are missing."""


class PostgresStartError(RuntimeError):
    """initdb or the server failed; the message carries the tail of the log."""


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _major(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<major>/bin: "15" -> (15,), "9.6" -> (9, 6); junk sorts first.
    parts = path.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_bindir() -> Path:
    """Folder holding initdb/pg_ctl/postgres: newest /usr/lib/postgresql/*/bin, or pg_config."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and _has_server(Path(out)):
                return Path(out)
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie (PID 1 in a container may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _quote(value: str) -> str:
    """Quote a libpq conninfo value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_quote(value: str) -> str:
    """Quote a postgresql.conf string value."""
    return "'" + value.replace("'", "''") + "'"


class TempPostgres:
    """A PostgreSQL server in a temporary folder, listening on 127.0.0.1 only."""

    host = "127.0.0.1"
    user = "postgres"
    dbname = "postgres"

    def __init__(
        self,
        *,
        hba_lines: Sequence[str] | None = None,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        """``hba_lines`` go first in pg_hba.conf; ``bindir`` overrides the binary lookup."""
        self.hba_lines: list[str] = list(hba_lines or [])
        self._bindir = Path(bindir) if bindir is not None else None
        self.password = secrets.token_urlsafe(24)
        self.folder: Path | None = None
        self._port: int | None = None
        self._started = False
        self._owner_pid = os.getpid()
        self._runuser: list[str] = []
        self._uid_gid: tuple[int, int] | None = None
        self._resolved_bindir: Path | None = None
        self.start_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> TempPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> TempPostgres:
        """initdb, configure and start; on any failure, clean up and raise."""
        if self.folder is not None:
            raise RuntimeError("TempPostgres already started")
        began = time.monotonic()
        bindir = self._bindir or find_bindir()
        if not _has_server(bindir):
            raise PostgresUnavailable(f"no initdb/pg_ctl/postgres in {bindir}; {INSTALL_HINT}")
        self._prepare_user()
        self._resolved_bindir = bindir
        self._owner_pid = os.getpid()
        self.folder = Path(tempfile.mkdtemp(prefix="azpytest-pg-", dir="/tmp"))
        atexit.register(self._atexit_stop)
        try:
            self._chown(self.folder)
            self._initdb(bindir)
            self._configure()
            self._launch(bindir)
        except BaseException:
            self.stop()
            raise
        self._started = True
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete the folder; safe to call repeatedly."""
        folder, self.folder = self.folder, None
        self._started = False
        self._port = None
        atexit.unregister(self._atexit_stop)
        if folder is None:
            return
        try:
            pidfile = folder / "data" / "postmaster.pid"
            bindir = self._resolved_bindir
            if pidfile.exists() and bindir is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    pg_ctl = str(bindir / "pg_ctl")
                    self._run(
                        [pg_ctl, "stop", "-D", str(folder / "data"), "-m", "immediate", "-w"],
                        cwd=folder,
                        check=False,
                    )
                if pidfile.exists():
                    self._kill_postmaster(pidfile)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _atexit_stop(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()

    # -- connection details ------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the server is up (start() finished and stop() not called)."""
        return self._started

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        if self._port is None or not self._started:
            raise RuntimeError("TempPostgres is not started")
        return self._port

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (inside ``folder``)."""
        if self.folder is None:
            raise RuntimeError("TempPostgres is not started")
        return self.folder / "data"

    @property
    def dsn(self) -> str:
        """libpq conninfo string for the superuser."""
        return self.conninfo()

    def conninfo(
        self, *, dbname: str | None = None, user: str | None = None, password: str | None = None
    ) -> str:
        """libpq conninfo string; defaults to the superuser and the ``postgres`` database."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user if user is None else user,
            "password": self.password if password is None else password,
            "dbname": self.dbname if dbname is None else dbname,
        }
        return " ".join(f"{key}={_quote(value)}" for key, value in parts.items())

    def connect(
        self,
        *,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> psycopg.Connection[Any]:
        """Open a psycopg connection (extra keywords go to ``psycopg.connect``)."""
        import psycopg

        info = self.conninfo(dbname=dbname, user=user, password=password)
        conn: psycopg.Connection[Any] = psycopg.connect(info, **kwargs)
        return conn

    def env(self) -> dict[str, str]:
        """PG* environment variables for libpq clients (psql, dbt, ...)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._started else "stopped"
        return f"<TempPostgres {state} folder={self.folder}>"

    # -- internals ---------------------------------------------------------------------------

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            self._runuser, self._uid_gid = [], None
            return
        import pwd

        try:
            entry = pwd.getpwnam(_OS_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root but there is no {_OS_USER!r} user; {INSTALL_HINT}"
            ) from None
        runuser = shutil.which("runuser") or next(
            (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
        )
        if runuser is None:
            raise PostgresUnavailable("running as root but runuser is missing (util-linux)")
        self._runuser = [runuser, "-u", _OS_USER, "--"]
        self._uid_gid = (entry.pw_uid, entry.pw_gid)

    def _chown(self, path: Path) -> None:
        if self._uid_gid is not None:
            os.chown(path, *self._uid_gid)

    def _write(self, path: Path, text: str, *, append: bool = False) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if self._uid_gid is not None:
                os.fchown(fh.fileno(), *self._uid_gid)
            fh.write(text)

    def _run(
        self, args: list[str], *, cwd: Path, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        proc = subprocess.run(
            self._runuser + args,
            cwd=cwd,  # root's cwd may be unreadable for postgres
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        if check and proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise PostgresStartError(f"{Path(args[0]).name} failed ({proc.returncode}):\n{output}")
        return proc

    def _initdb(self, bindir: Path) -> None:
        assert self.folder is not None
        pwfile = self.folder / "pwfile"
        self._write(pwfile, self.password + "\n")
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(self.folder / "data"),
                    "--username",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ],
                cwd=self.folder,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _configure(self) -> None:
        assert self.folder is not None
        data = self.folder / "data"
        hba = [
            "# Written by azpytest TempPostgres; caller lines come first.",
            *self.hba_lines,
            "local all all scram-sha-256",
            "host all all 127.0.0.1/32 scram-sha-256",
            "",
        ]
        self._write(data / "pg_hba.conf", "\n".join(hba))
        self._write(data / "postgresql.conf", "\ninclude 'azpytest.conf'\n", append=True)

    def _write_port(self, port: int) -> None:
        assert self.folder is not None
        settings = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _conf_quote(str(self.folder)),
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "100",
            "logging_collector": "off",
        }
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._write(self.folder / "data" / "azpytest.conf", text)

    def _launch(self, bindir: Path) -> None:
        assert self.folder is not None
        log = self.folder / "server.log"
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            self._write_port(port)
            offset = log.stat().st_size if log.exists() else 0
            pg_ctl = str(bindir / "pg_ctl")
            proc = self._run(
                [pg_ctl, "start", "-D", str(self.folder / "data"), "-l", str(log), "-w", "-s"],
                cwd=self.folder,
                check=False,
            )
            if proc.returncode == 0:
                self._port = port
                return
            tail = log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""
            if attempt < _START_ATTEMPTS and "Address already in use" in tail:
                continue  # someone took the port between our probe and the bind
            output = "\n".join(s for s in (proc.stdout.strip(), proc.stderr.strip(), tail) if s)
            raise PostgresStartError(f"PostgreSQL did not start:\n{output[-4000:]}")

    @staticmethod
    def _kill_postmaster(pidfile: Path) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            # Only our postmaster (started with "-D <datadir>"), never a recycled pid.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if pid > 0 and os.fsencode(pidfile.parent) in cmdline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.02)

"""An Azure SQL stand-in on 127.0.0.1: TDS 7.4 with Entra token logins, as ODBC Driver 18
(and so Microsoft's mssql-python) meets Azure SQL Database.

A connection goes: PRELOGIN (the server says encryption on and, when asked, FEDAUTHREQUIRED);
the TLS handshake carried inside PRELOGIN packets, with a certificate from the sandbox's CA
for the server's real names (`<server>.database.windows.net` and the sovereign suffixes) and
127.0.0.1; then, inside TLS, LOGIN7 with the FEDAUTH feature carrying the access token. The
token is checked as Azure SQL does: signed by the sandbox's Entra, audience the cloud's
database resource, the server's tenant, not expired (a few seconds of skew), and the app a
user of the database. The firewall is checked first. Refusals carry Azure SQL's numbers and
words (18456, 40615, 40613, 4060). After login, `SELECT 1`, `SELECT SUSER_SNAME()`,
`SELECT DB_NAME()` and `SELECT @@VERSION` get real result sets; SET statements and the
driver's transaction requests are acknowledged; anything else is an error saying the
stand-in does not execute it.

Every login goes to the sandbox's request log as service ``sql``, method ``LOGIN``, host the
server's name, path ``/<database>``, status 0 or the error number, who the token's appid;
every statement as method ``QUERY`` with its first 80 characters. A fault rule of service
``sql`` answers logins with 40613 (`status`), holds them (`hang_s`) or drops them (`reset`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from typing import Any, cast

import jwt

from . import tds
from .entra import Entra, Principal, TokenRejected
from .httpd import FaultBook, LoggedRequest, RequestLog
from .scenario import SqlServer
from .tcpserver import LoopbackServer
from .tokens import SigningKey

__all__ = ["DATABASE_RESOURCES", "SQL_SUFFIXES", "SqlServerStandIn"]

# The database resource (token audience) and server name suffix of each cloud.
DATABASE_RESOURCES = {
    "AzureCloud": "https://database.windows.net/",
    "AzureUSGovernment": "https://database.usgovcloudapi.net/",
    "AzureChinaCloud": "https://database.chinacloudapi.cn/",
}
SQL_SUFFIXES = {
    "AzureCloud": ".database.windows.net",
    "AzureUSGovernment": ".database.usgovcloudapi.net",
    "AzureChinaCloud": ".database.chinacloudapi.cn",
}
CLOCK_SKEW_S = 5
_IDLE_TIMEOUT_S = 120
_MAX_MESSAGE = 1024 * 1024
_PRINCIPAL = "<token-identified principal>"
_VERSION = (
    "Microsoft SQL Azure (RTM) - 12.0.2000.8 \n\tOct  1 2026 00:00:00 \n\t"
    "Copyright (C) 2022 Microsoft Corporation\n\t(the azpytest sandbox's stand-in)"
)
_ANSWERED = "SELECT 1, SELECT SUSER_SNAME(), SELECT DB_NAME() and SELECT @@VERSION"


class _Refused(Exception):
    def __init__(self, number: int, state: int, severity: int, text: str) -> None:
        super().__init__(text)
        self.number, self.state, self.severity, self.text = number, state, severity, text


class _Closed(Exception):
    """The client went away."""


class _SkewTolerantKey(SigningKey):
    def verify(self, token: str, **options: Any) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            self.private.public_key(),
            algorithms=["RS256"],
            leeway=CLOCK_SKEW_S,
            options=cast(Any, {"verify_aud": False, **options}),
        )
        return claims


class SqlServerStandIn:
    """One Azure SQL logical server of the scenario on a free port of 127.0.0.1."""

    def __init__(
        self,
        server: SqlServer,
        entra: Entra,
        context: ssl.SSLContext,
        log: RequestLog,
        faults: FaultBook,
    ) -> None:
        self.server = server
        self.entra = Entra(
            entra.scenario, _SkewTolerantKey(entra.key.kid, entra.key.private), entra.issuer_keys
        )
        self.context = context
        self.log = log
        self.faults = faults
        self.stopping = threading.Event()
        self._tcp: _TcpServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        # Every token a login presented, in order: tests check they were masked, and renewed.
        self.tokens_seen: list[str] = []

    @property
    def host_name(self) -> str:
        """The server's real name, `<name>.database.windows.net` (or the cloud's)."""
        return self.server.name + SQL_SUFFIXES[self.server.cloud]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Azure SQL stand-in was never started")
        return self._port

    def start(self) -> SqlServerStandIn:
        tcp = _TcpServer(self)
        self._tcp, self._port = tcp, tcp.port
        self._thread = threading.Thread(
            target=tcp.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-sql-{self.server.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        tcp, self._tcp = self._tcp, None
        if tcp is None:
            return
        if self._thread is not None:
            tcp.shutdown()
            self._thread = None
        tcp.server_close()
        tcp.drop_connections()

    # ------------------------------------------------------------------ the checks

    def login(self, login: tds.Login, address: str) -> tuple[Principal, str]:
        """(principal, database) of an accepted login; _Refused with Azure SQL's error."""
        database = login.database or "master"
        if not self._firewall_allows(address):
            raise _Refused(
                40615,
                1,
                14,
                f"Cannot open server '{self.server.name}' requested by the login. Client with IP "
                f"address '{address}' is not allowed to access the server.  To enable access, "
                "use the Azure Management Portal or run sp_set_firewall_rule on the master "
                "database to create a firewall rule for this IP address or address range.  It "
                "may take up to five minutes for this change to take effect.",
            )
        if login.fedauth_library != tds.FEDAUTH_LIBRARY_SECURITYTOKEN or not login.token:
            user = login.user_name or ""
            raise _Refused(18456, 1, 14, f"Login failed for user '{user}'.")
        audience = DATABASE_RESOURCES[self.server.cloud]
        try:
            principal = self.entra.verify(login.token, {audience}, tenant_id=None)
        except TokenRejected as exc:
            if exc.reason.startswith("Token expired"):
                raise _Refused(
                    18456, 1, 14, f"Login failed for user '{_PRINCIPAL}'. Token is expired."
                ) from None
            raise _Refused(
                18456, 1, 14, f"Login failed for user '{_PRINCIPAL}'. Incorrect or invalid token."
            ) from None
        if str(principal.claims.get("tid", "")).lower() != self.server.tenant_id.lower():
            raise _Refused(
                18456,
                1,
                14,
                f"Login failed for user '{_PRINCIPAL}'. The server is not currently configured "
                "to accept this token.",
            )
        db = self.server.databases.get(database.lower())
        if db is None:
            raise _Refused(
                4060,
                1,
                11,
                f'Cannot open database "{database}" requested by the login. The login failed.',
            )
        if not db.available:
            raise self._unavailable(database)
        app = principal.app
        wanted = {app.name.lower(), app.client_id.lower(), app.object_id.lower()}
        if not wanted & {u.lower() for u in db.users}:
            raise _Refused(18456, 1, 14, f"Login failed for user '{_PRINCIPAL}'.")
        return principal, db.name

    def _unavailable(self, database: str) -> _Refused:
        return _Refused(
            40613,
            1,
            17,
            f"Database '{database}' on server '{self.server.name}' is not currently available.  "
            "Please retry the connection later.  If the problem persists, contact customer "
            "support, and provide them the session tracing ID of "
            "'00000000-0000-0000-0000-000000000000'.",
        )

    def _firewall_allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        for start, end in self.server.firewall:
            low, high = ipaddress.ip_address(start), ipaddress.ip_address(end)
            if low.version == high.version == ip.version and int(low) <= int(ip) <= int(high):
                return True
        return False

    def log_event(self, started: float, method: str, path: str, status: int, who: str) -> None:
        self.log.add(LoggedRequest(started, "sql", method, self.host_name, path, status, who))


# ---------------------------------------------------------------------------------------- wire


class _Channel:
    """TDS packets over the socket, in clear or inside TLS (ssl.SSLObject on memory BIOs)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.buffer = bytearray()
        self.packet_size = 4096

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed
        return data

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            if self.tls is None:
                self.buffer += self._recv()
                continue
            try:
                self.buffer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.incoming.write(self._recv())
            except ssl.SSLZeroReturnError:
                raise _Closed from None
            self._flush()

    def _take(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def read_message(self) -> tuple[int, bytes]:
        """(type, data) of the next whole message."""
        data = bytearray()
        while True:
            kind, status, length = tds.parse_header(self._take(tds.HEADER.size))
            data += self._take(length)
            if len(data) > _MAX_MESSAGE:
                raise tds.TdsError(f"a message larger than {_MAX_MESSAGE} bytes")
            if status & tds.EOM:
                return kind, bytes(data)

    def send(self, kind: int, data: bytes) -> None:
        raw = tds.packets(kind, data, self.packet_size, spid=51)
        if self.tls is None:
            self.sock.sendall(raw)
        else:
            self.tls.write(raw)
            self._flush()

    def handshake(self, context: ssl.SSLContext) -> None:
        """TLS, its records carried in PRELOGIN packets until the handshake is done."""
        tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self.outgoing.read()
                if pending:
                    self.sock.sendall(tds.packets(tds.PRELOGIN, pending, self.packet_size))
                kind, data = self.read_message()
                if kind != tds.PRELOGIN:
                    problem = f"expected TLS in a PRELOGIN packet, got type 0x{kind:02x}"
                    raise tds.TdsError(problem) from None
                self.incoming.write(data)
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(tds.packets(tds.PRELOGIN, pending, self.packet_size))
        self.tls = tls


class _TcpServer(LoopbackServer):
    def __init__(self, stand_in: SqlServerStandIn) -> None:
        super().__init__(_Connection)
        self.stand_in = stand_in


_SPACES = re.compile(r"\s+")


class _Connection(socketserver.BaseRequestHandler):
    server: _TcpServer
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(_IDLE_TIMEOUT_S)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.opened(self.request)
        try:
            self._serve(_Channel(self.request))
        except (_Closed, OSError, ssl.SSLError, tds.TdsError):
            pass
        finally:
            self.server.closed(self.request)

    def _serve(self, channel: _Channel) -> None:
        stand_in = self.server.stand_in
        kind, data = channel.read_message()
        if kind != tds.PRELOGIN:
            return
        options = tds.parse_prelogin(data)
        client_encryption = (options.get(tds.PL_ENCRYPTION) or b"\x00")[0]
        asked_fedauth = tds.PL_FEDAUTHREQUIRED in options
        # Azure SQL always encrypts: a client that cannot gets ENCRYPT_REQ and gives up.
        answer = tds.ENCRYPT_REQ if client_encryption == tds.ENCRYPT_NOT_SUP else tds.ENCRYPT_ON
        channel.send(
            tds.TABULAR_RESULT, tds.prelogin_response(answer, True if asked_fedauth else None)
        )
        if answer == tds.ENCRYPT_REQ:
            return
        channel.handshake(stand_in.context)

        kind, data = channel.read_message()
        if kind != tds.LOGIN7:
            return
        started = time.time()
        login = tds.parse_login7(data)
        database = login.database or "master"
        if login.packet_size and 512 <= login.packet_size <= 32767:
            channel.packet_size = login.packet_size
        who = "anonymous"
        if login.token:
            stand_in.tokens_seen.append(login.token)
            with contextlib.suppress(jwt.PyJWTError):
                claims = jwt.decode(login.token, options={"verify_signature": False})
                who = str(claims.get("appid", "anonymous"))

        delay_ms, fault = stand_in.faults.pick("sql", "LOGIN", stand_in.host_name, f"/{database}")
        if delay_ms and stand_in.stopping.wait(delay_ms / 1000):
            return
        if fault is not None and fault.hang_s:
            stand_in.stopping.wait(fault.hang_s)
            stand_in.log_event(started, "LOGIN", f"/{database}", -1, "hang")
            return
        if fault is not None and fault.reset:
            stand_in.log_event(started, "LOGIN", f"/{database}", -1, "reset")
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        try:
            if fault is not None and fault.status is not None:
                raise stand_in._unavailable(database)
            principal, database = stand_in.login(login, self.client_address[0])
        except _Refused as refused:
            stand_in.log_event(started, "LOGIN", f"/{database}", refused.number, who)
            channel.send(
                tds.TABULAR_RESULT,
                tds.error(
                    refused.number,
                    refused.state,
                    refused.severity,
                    refused.text,
                    stand_in.server.name,
                )
                + tds.done(tds.DONE_ERROR),
            )
            return
        stand_in.log_event(started, "LOGIN", f"/{database}", 0, who)
        size = str(channel.packet_size)
        channel.send(
            tds.TABULAR_RESULT,
            tds.envchange(tds.ENV_DATABASE, database, "master")
            + tds.envchange_bytes(tds.ENV_COLLATION, tds.COLLATION)
            + tds.envchange(tds.ENV_LANGUAGE, "us_english")
            + tds.loginack()
            + tds.featureextack({tds.FEATURE_FEDAUTH: b""})
            + tds.envchange(tds.ENV_PACKETSIZE, size, size)
            + tds.done(),
        )
        self._statements(channel, principal, database)

    def _statements(self, channel: _Channel, principal: Principal, database: str) -> None:
        stand_in = self.server.stand_in
        transaction = 0
        while not stand_in.stopping.is_set():
            kind, data = channel.read_message()
            started = time.time()
            if kind == tds.SQL_BATCH:
                sql = tds.batch_text(data)
                answer, status = self._answer(sql, principal, database)
                stand_in.log_event(started, "QUERY", sql[:80], status, principal.app.client_id)
                channel.send(tds.TABULAR_RESULT, answer)
            elif kind == tds.TRANSACTION_MANAGER:
                request = tds.transaction_request(data)
                body = b""
                if request == tds.TM_BEGIN_XACT:
                    transaction += 1
                    body = tds.envchange_bytes(
                        tds.ENV_BEGIN_TRAN, transaction.to_bytes(8, "little")
                    )
                elif request in (tds.TM_COMMIT_XACT, tds.TM_ROLLBACK_XACT) and transaction:
                    change = (
                        tds.ENV_COMMIT_TRAN
                        if request == tds.TM_COMMIT_XACT
                        else tds.ENV_ROLLBACK_TRAN
                    )
                    body = tds.envchange_bytes(change, b"", transaction.to_bytes(8, "little"))
                channel.send(tds.TABULAR_RESULT, body + tds.done())
            elif kind == tds.ATTENTION:
                channel.send(tds.TABULAR_RESULT, tds.done(tds.DONE_ATTN))
            else:
                text = (
                    "The azpytest sandbox's Azure SQL stand-in does not execute TDS message "
                    f"type 0x{kind:02x} (remote procedure calls, bulk loads); it answers "
                    f"{_ANSWERED}."
                )
                stand_in.log_event(started, "QUERY", f"<type 0x{kind:02x}>", 40000, "")
                channel.send(
                    tds.TABULAR_RESULT,
                    tds.error(40000, 1, 16, text, stand_in.server.name) + tds.done(tds.DONE_ERROR),
                )

    def _answer(self, sql: str, principal: Principal, database: str) -> tuple[bytes, int]:
        stand_in = self.server.stand_in
        statement = _SPACES.sub(" ", sql).strip().rstrip(";").strip()
        upper = statement.upper()
        if upper == "SELECT 1":
            return tds.result_set([tds.Column("", 1)]), 0
        if upper == "SELECT SUSER_SNAME()":
            return tds.result_set([tds.Column("", principal.app.name)]), 0
        if upper == "SELECT DB_NAME()":
            return tds.result_set([tds.Column("", database)]), 0
        if upper == "SELECT @@VERSION":
            return tds.result_set([tds.Column("", _VERSION)]), 0
        if upper.startswith("SET ") and "\n" not in statement and ";" not in statement:
            return tds.done(), 0  # the driver's own session settings
        shown = statement if len(statement) <= 80 else statement[:77] + "..."
        text = (
            f"The azpytest sandbox's Azure SQL stand-in does not execute '{shown}'; it answers "
            f"{_ANSWERED}."
        )
        return tds.error(40000, 1, 16, text, stand_in.server.name) + tds.done(tds.DONE_ERROR), 40000

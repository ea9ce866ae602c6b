"""A real PostgreSQL takes Entra access tokens as passwords, as Azure Database for PostgreSQL
does: its `ldap` method hands each login to the sandbox's LDAP responder, which checks the token.

The PostgreSQL tests use psycopg and tokens that azure-identity gets through the proxy; the
protocol tests speak BER to the responder with bytes written out here, not with its own encoder.
"""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from azure.identity import ClientAssertionCredential
from psycopg import sql

from azpytest_sandbox import Sandbox
from azpytest_sandbox.ldap import OSSRDBMS_RESOURCE, hba_line
from azpytest_sandbox.postgres import TempPostgres
from azpytest_sandbox.scenario import default_scenario_data

PG_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
ROLE = "azpytest-ci"  # the default scenario's app, and so the role its tokens log in as
DN = f"cn={ROLE},dc=azpytest"
LOGIN_FAILED = f'LDAP authentication failed for user "{ROLE}"'
# The token line catches every 127.0.0.1 login, so the superuser's own line goes before it.
SUPERUSER_LINE = "host all postgres 127.0.0.1/32 scram-sha-256"

StartPostgres = Callable[..., TempPostgres]


@pytest.fixture
def entra_postgres(postgres_bindir: Path) -> Iterator[StartPostgres]:
    """Start a PostgreSQL whose 127.0.0.1 logins go to a sandbox's responder, with login roles."""
    started: list[TempPostgres] = []

    def start(sandbox: Sandbox, roles: tuple[str, ...] = (ROLE,)) -> TempPostgres:
        pg = TempPostgres(hba_lines=[SUPERUSER_LINE, sandbox.ldap_hba_line], bindir=postgres_bindir)
        started.append(pg)
        pg.start()
        with pg.connect(autocommit=True) as conn:
            for role in roles:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        return pg

    yield start
    for pg in started:
        pg.stop()


def credential(sandbox: Sandbox) -> ClientAssertionCredential:
    """What a job does: trade a fresh GitHub token for each Entra token."""
    return ClientAssertionCredential(
        sandbox.env["AZURE_TENANT_ID"],
        sandbox.env["AZURE_CLIENT_ID"],
        func=lambda: sandbox.github.issue(),
    )


def login(pg: TempPostgres, token: str, user: str = ROLE) -> str:
    """Log in with the token as password; the session's current_user."""
    with pg.connect(user=user, password=token, connect_timeout=10) as conn:
        row = conn.execute("select current_user").fetchone()
    assert row is not None
    return str(row[0])


def refusal(pg: TempPostgres, token: str, user: str = ROLE) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        login(pg, token, user)
    return str(caught.value)


def server_log(pg: TempPostgres) -> str:
    assert pg.folder is not None
    return (pg.folder / "server.log").read_text(errors="replace")


# ------------------------------------------------------------------------------ PostgreSQL


def test_a_fresh_token_from_the_credential_logs_in_as_the_apps_role(
    sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox], entra_postgres: StartPostgres
) -> None:
    use_sandbox(sandbox)
    pg = entra_postgres(sandbox)
    assert sandbox.ldap_hba_line == hba_line(sandbox.ldap_port)
    assert sandbox.ldap_hba_line == (
        f"host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport={sandbox.ldap_port} "
        'ldapprefix="cn=" ldapsuffix=",dc=azpytest"'
    )
    token = credential(sandbox).get_token(PG_SCOPE).token

    assert login(pg, token) == ROLE

    [bind] = sandbox.log.select(service="ldap")
    assert (bind.method, bind.host, bind.path, bind.status) == ("BIND", "127.0.0.1", DN, 0)
    assert bind.who == sandbox.env["AZURE_CLIENT_ID"]


def test_postgresql_refuses_expired_misdirected_and_borrowed_tokens(
    sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox], entra_postgres: StartPostgres
) -> None:
    use_sandbox(sandbox)
    pg = entra_postgres(sandbox, roles=(ROLE, "someone-else", "AZPYTEST-CI"))
    app = sandbox.scenario.default_app
    assert app is not None
    expired, _ = sandbox.entra.access_token(app, OSSRDBMS_RESOURCE, lifetime_s=-60)
    vault_token = credential(sandbox).get_token("https://vault.azure.net/.default").token
    token = credential(sandbox).get_token(PG_SCOPE).token

    assert LOGIN_FAILED in refusal(pg, expired)
    assert LOGIN_FAILED in refusal(pg, vault_token)
    # A valid token is the app's password only: not another role's, not even in other case.
    assert 'LDAP authentication failed for user "someone-else"' in refusal(
        pg, token, "someone-else"
    )
    assert 'LDAP authentication failed for user "AZPYTEST-CI"' in refusal(pg, token, "AZPYTEST-CI")
    assert login(pg, token) == ROLE

    # PostgreSQL's log says why, from the responder's diagnosticMessage.
    text = server_log(pg)
    assert "LDAP diagnostics: Token expired." in text
    assert (
        "LDAP diagnostics: Invalid audience. Expected https://ossrdbms-aad.database.windows.net, "
        "found: https://vault.azure.net." in text
    )
    assert (
        "LDAP diagnostics: the token is for 'azpytest-ci', not for the role 'someone-else'" in text
    )
    assert (
        "LDAP diagnostics: the token is for 'azpytest-ci', not for the role 'AZPYTEST-CI'" in text
    )
    statuses = [(e.path, e.status) for e in sandbox.log.select(service="ldap")]
    assert statuses == [
        (DN, 49),
        (DN, 49),
        ("cn=someone-else,dc=azpytest", 49),
        ("cn=AZPYTEST-CI,dc=azpytest", 49),
        (DN, 0),
    ]


def test_a_token_of_two_to_three_kilobytes_logs_in(
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[[Sandbox], Sandbox],
    entra_postgres: StartPostgres,
) -> None:
    # App roles travel in the token, as they do from Entra; twenty make it 2-3 KB.
    world = default_scenario_data()
    world["tenants"][0]["apps"][0]["roles"] = [f"Db.Role.{uuid.uuid4()}" for _ in range(20)]
    sandbox = use_sandbox(make_sandbox(world))
    pg = entra_postgres(sandbox)
    token = credential(sandbox).get_token(PG_SCOPE).token

    assert 2000 <= len(token) <= 3000, len(token)
    assert login(pg, token) == ROLE


def test_thirty_seconds_of_logins_with_five_second_tokens_never_fail(
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[[Sandbox], Sandbox],
    entra_postgres: StartPostgres,
) -> None:
    sandbox = use_sandbox(make_sandbox({"token_lifetime_s": 5}))
    pg = entra_postgres(sandbox)
    who = credential(sandbox)
    tokens: set[str] = set()
    logins = 0
    # As a connection pool does: ask the credential for the password of every new connection.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        token = who.get_token(PG_SCOPE).token
        tokens.add(token)
        assert login(pg, token) == ROLE
        logins += 1

    assert len(tokens) > 5  # the loop outlived several tokens, and each expiry went unnoticed
    binds = sandbox.log.select(service="ldap")
    assert len(binds) == logins
    assert {e.status for e in binds} == {0}
    assert {e.status for e in sandbox.log.select(service="entra", method="POST")} == {200}


def test_the_log_shows_every_bind_and_never_a_token(
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[[Sandbox], Sandbox],
    entra_postgres: StartPostgres,
) -> None:
    sink = io.StringIO()
    sandbox = use_sandbox(make_sandbox(log_sink=sink))
    pg = entra_postgres(sandbox)
    app = sandbox.scenario.default_app
    assert app is not None
    token = credential(sandbox).get_token(PG_SCOPE).token
    expired, _ = sandbox.entra.access_token(app, OSSRDBMS_RESOURCE, lifetime_s=-60)

    login(pg, token)
    refusal(pg, expired)
    refusal(pg, token, "postgres")  # the superuser's line comes first: no LDAP bind

    binds = [json.loads(line) for line in sink.getvalue().splitlines()]
    binds = [b for b in binds if b["service"] == "ldap"]
    assert [(b["method"], b["path"], b["status"]) for b in binds] == [
        ("BIND", DN, 0),
        ("BIND", DN, 49),
    ]
    assert [b["who"] for b in binds] == [app.client_id, "anonymous"]
    for secret in (token, expired, *(t.split(".")[2] for t in (token, expired))):
        assert secret not in sink.getvalue()
        assert secret not in server_log(pg)


def test_latency_and_status_fault_rules_apply_to_binds(
    sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox], entra_postgres: StartPostgres
) -> None:
    use_sandbox(sandbox)
    pg = entra_postgres(sandbox)
    token = credential(sandbox).get_token(PG_SCOPE).token
    sandbox.add_fault(service="ldap", latency_ms=400)
    sandbox.add_fault(service="ldap", method="BIND", status=503, times=1)

    assert LOGIN_FAILED in refusal(pg, token)
    began = time.monotonic()
    assert login(pg, token) == ROLE
    assert time.monotonic() - began >= 0.4

    assert "LDAP diagnostics: a sandbox fault rule answers unavailable (HTTP 503)" in server_log(pg)
    assert [e.status for e in sandbox.log.select(service="ldap")] == [52, 0]


def test_a_dead_responder_fails_the_login_at_once(
    sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox], entra_postgres: StartPostgres
) -> None:
    use_sandbox(sandbox)
    pg = entra_postgres(sandbox)
    token = credential(sandbox).get_token(PG_SCOPE).token
    assert sandbox.ldap is not None
    sandbox.ldap.stop()
    sandbox.ldap.stop()  # twice is harmless

    began = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as caught:
        pg.connect(user=ROLE, password=token, connect_timeout=10)
    # A hang would end in psycopg's "timeout expired" after connect_timeout instead.
    assert LOGIN_FAILED in str(caught.value)
    assert time.monotonic() - began < 10
    assert "Can't contact LDAP server" in server_log(pg)


# ------------------------------------------------------------------------------ the protocol


def ber(tag: int, contents: bytes, *, long_form: bool = False) -> bytes:
    """One BER element; `long_form` writes the length in four bytes, as BER allows."""
    if len(contents) < 0x80 and not long_form:
        return bytes([tag, len(contents)]) + contents
    return bytes([tag, 0x84]) + len(contents).to_bytes(4, "big") + contents


def bind_request(
    message_id: int,
    dn: str,
    password: bytes,
    *,
    version: int = 3,
    auth_tag: int = 0x80,
    long_form: bool = False,
) -> bytes:
    op = (
        ber(0x02, bytes([version]))
        + ber(0x04, dn.encode(), long_form=long_form)
        + ber(auth_tag, password, long_form=long_form)
    )
    body = ber(0x02, message_id.to_bytes(2, "big")) + ber(0x60, op, long_form=long_form)
    return ber(0x30, body, long_form=long_form)


UNBIND = ber(0x30, ber(0x02, b"\x07") + b"\x42\x00")


def elements(data: bytes) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, size = data[pos], data[pos + 1]
        pos += 2
        if size & 0x80:
            count = size & 0x7F
            size = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        found.append((tag, data[pos : pos + size]))
        pos += size
    return found


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"the responder closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def answer(sock: socket.socket) -> tuple[int, int, int, str]:
    """(messageID, protocolOp tag, resultCode, diagnosticMessage) of the next LDAPMessage."""
    tag, size = recv_exact(sock, 2)
    assert tag == 0x30
    if size & 0x80:
        size = int.from_bytes(recv_exact(sock, size & 0x7F), "big")
    (_, message_id), (op_tag, op), *_ = elements(recv_exact(sock, size))
    (_, code), _matched, (_, diagnostic), *_ = elements(op)
    return int.from_bytes(message_id, "big"), op_tag, code[0], diagnostic.decode()


def closed(sock: socket.socket) -> bool:
    return sock.recv(1) == b""


@pytest.fixture
def responder(sandbox: Sandbox) -> Iterator[Callable[[], socket.socket]]:
    """Open raw connections to the sandbox's responder (closed at the end)."""
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", sandbox.ldap_port), timeout=10)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


def fresh_token(sandbox: Sandbox) -> str:
    app = sandbox.scenario.default_app
    assert app is not None
    return sandbox.entra.access_token(app, OSSRDBMS_RESOURCE)[0]


def test_a_bind_sent_byte_by_byte_with_long_lengths_is_understood(
    sandbox: Sandbox, responder: Callable[[], socket.socket]
) -> None:
    sock = responder()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in bind_request(300, DN, fresh_token(sandbox).encode(), long_form=True):
        sock.sendall(bytes([byte]))
    assert answer(sock) == (300, 0x61, 0, "")


def test_several_binds_share_a_connection_until_unbind(
    sandbox: Sandbox, responder: Callable[[], socket.socket]
) -> None:
    sock = responder()
    token = fresh_token(sandbox).encode()
    big = b"x" * 60_000  # near PostgreSQL's 65,530-byte limit; lengths take two bytes

    sock.sendall(bind_request(1, "uid=azpytest-ci,ou=people", token))
    assert answer(sock) == (1, 0x61, 49, "the DN is not cn=<role>,dc=azpytest")
    sock.sendall(bind_request(2, DN, big))
    message_id, _, code, diagnostic = answer(sock)
    assert (message_id, code) == (2, 49)
    assert diagnostic.startswith("Token validation failed:")
    assert "xxxx" not in diagnostic
    sock.sendall(bind_request(3, DN, b""))
    assert answer(sock) == (3, 0x61, 49, "an unauthenticated bind (no password)")
    sock.sendall(bind_request(4, DN, token) + bind_request(5, DN, token))  # pipelined
    assert answer(sock) == (4, 0x61, 0, "")
    assert answer(sock) == (5, 0x61, 0, "")
    sock.sendall(UNBIND)
    assert closed(sock)
    assert [e.status for e in sandbox.log.select(service="ldap")] == [49, 49, 49, 0, 0]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        pytest.param(
            ber(0x30, ber(0x02, b"\x05") + ber(0x63, ber(0x04, b"dc=azpytest"))),
            (0, 0x78, 2, "operation 0x63 is not supported"),
            id="search",
        ),
        pytest.param(
            bind_request(6, DN, ber(0x04, b"GSSAPI"), auth_tag=0xA3),
            (6, 0x61, 2, "only simple bind is supported"),
            id="sasl-bind",
        ),
        pytest.param(
            bind_request(7, DN, b"token", version=2),
            (7, 0x61, 2, "only LDAPv3 is supported"),
            id="ldapv2-bind",
        ),
        pytest.param(
            b"\x30\x80" + ber(0x02, b"\x01") + b"\x42\x00\x00\x00",
            (0, 0x78, 2, "indefinite lengths are not allowed in LDAP"),
            id="indefinite-length",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n\r\n",
            (0, 0x78, 2, "expected an LDAPMessage (0x30), got tag 0x47"),
            id="not-ldap",
        ),
        pytest.param(
            b"\x30\x85" + b"\x00" * 5,
            (0, 0x78, 2, "a length of 5 bytes is too long"),
            id="huge-length",
        ),
    ],
)
def test_what_it_does_not_understand_is_a_protocol_error_then_close(
    responder: Callable[[], socket.socket],
    request_bytes: bytes,
    expected: tuple[int, int, int, str],
) -> None:
    sock = responder()
    sock.sendall(request_bytes)
    assert answer(sock) == expected
    assert closed(sock)


def test_clients_that_vanish_mid_message_leave_it_answering(
    sandbox: Sandbox, responder: Callable[[], socket.socket]
) -> None:
    whole = bind_request(1, DN, fresh_token(sandbox).encode())
    for cut in (1, 2, len(whole) // 2, len(whole) - 1):
        sock = responder()
        sock.sendall(whole[:cut])
        sock.close()
    sock = responder()
    sock.sendall(whole)
    assert answer(sock) == (1, 0x61, 0, "")


def test_stopping_drops_open_connections_at_once(
    sandbox: Sandbox, responder: Callable[[], socket.socket]
) -> None:
    sock = responder()
    sock.sendall(bind_request(1, DN, fresh_token(sandbox).encode()))
    assert answer(sock)[2] == 0
    assert sandbox.ldap is not None
    sandbox.ldap.stop()
    assert closed(sock)  # within the socket's 10 s timeout, or recv raises
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sandbox.ldap_port), timeout=10)

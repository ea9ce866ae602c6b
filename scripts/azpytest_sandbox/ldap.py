"""Entra sign-in to a real PostgreSQL: an LDAP simple-bind responder that checks access tokens.

Azure Database for PostgreSQL takes an Entra access token as the password of the role named
after the principal. A real PostgreSQL does the same with the ``ldap`` method of pg_hba.conf
(see :func:`hba_line`): it sends an LDAPv3 simple bind of ``cn=<role as typed>,dc=azpytest``
with the password to this responder, which accepts it only when the password is a sandbox
access token for ``https://ossrdbms-aad.database.windows.net`` whose app has the role's name.

Only what PostgreSQL sends is understood (RFC 4511, BER with definite lengths): BindRequest,
UnbindRequest and AbandonRequest. A bind it cannot take is answered protocolError; any other
operation, or bytes that are not an LDAPMessage, get a Notice of Disconnection (protocolError)
and the connection is closed. Every bind goes to the sandbox's request log as service
``ldap``, method ``BIND``, the DN as path and the resultCode as status (-1: no answer was
sent, by a fault rule); the password never does.
"""

from __future__ import annotations

import io
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import jwt

from .entra import Entra, TokenRejected
from .httpd import FaultBook, LoggedRequest, RequestLog
from .tcpserver import LoopbackServer
from .tokens import SigningKey

__all__ = [
    "BASE_DN",
    "CLOCK_SKEW_S",
    "DN_PREFIX",
    "DN_SUFFIX",
    "INVALID_CREDENTIALS",
    "OSSRDBMS_RESOURCE",
    "PROTOCOL_ERROR",
    "SUCCESS",
    "UNAVAILABLE",
    "LdapResponder",
    "hba_line",
]

OSSRDBMS_RESOURCE = "https://ossrdbms-aad.database.windows.net"
BASE_DN = "dc=azpytest"
DN_PREFIX = "cn="
DN_SUFFIX = "," + BASE_DN
# Entra-protected resources allow for clock skew (Microsoft.IdentityModel: 5 minutes). A few
# seconds are enough here: azure-identity hands out a cached token until its last second, and
# the login that carries it reaches the responder milliseconds later: checked strictly, a short
# `token_lifetime_s` fails about one login per token lifetime. A token that expired a minute
# ago is still refused.
CLOCK_SKEW_S = 5

# LDAP resultCodes (RFC 4511, 4.1.9).
SUCCESS = 0
PROTOCOL_ERROR = 2
INVALID_CREDENTIALS = 49
UNAVAILABLE = 52

# BER tags: universal types, and the application tags of the operations.
_INTEGER, _OCTET_STRING, _ENUMERATED, _SEQUENCE = 0x02, 0x04, 0x0A, 0x30
_BIND_REQUEST, _BIND_RESPONSE, _UNBIND_REQUEST = 0x60, 0x61, 0x42
_ABANDON_REQUEST, _EXTENDED_RESPONSE = 0x50, 0x78
_SIMPLE_AUTH, _RESPONSE_NAME = 0x80, 0x8A
_NOTICE_OF_DISCONNECTION = b"1.3.6.1.4.1.1466.20036"

# PostgreSQL sends passwords up to 65,530 bytes; anything much larger is not a login.
_MAX_MESSAGE = 256 * 1024
_IDLE_TIMEOUT_S = 60
_LOGGED_DN_CHARS = 256
_NO_ANSWER = -1


def hba_line(port: int) -> str:
    """The pg_hba.conf line that sends 127.0.0.1 logins to the responder on ``port``."""
    return (
        f"host all all 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport={port} "
        f'ldapprefix="{DN_PREFIX}" ldapsuffix="{DN_SUFFIX}"'
    )


# ---------------------------------------------------------------------------------------- BER


class _BerError(Exception):
    """Bytes that are not the LDAP message they should be; the text goes to the client."""


class _Disconnected(Exception):
    """The client went away, possibly mid-message."""


def _length(first: int, take: Callable[[int], bytes]) -> int:
    if first < 0x80:
        return first
    count = first & 0x7F
    if count == 0:
        raise _BerError("indefinite lengths are not allowed in LDAP")
    if count > 4:
        raise _BerError(f"a length of {count} bytes is too long")
    return int.from_bytes(take(count), "big")


def _read_message(stream: io.BufferedIOBase) -> bytes | None:
    """The contents of the next LDAPMessage; None when the client closed between messages."""

    def take(n: int) -> bytes:
        data = stream.read(n)  # a buffered read: returns short only at end of stream
        if len(data) < n:
            raise _Disconnected
        return data

    first = stream.read(1)
    if not first:
        return None
    if first[0] != _SEQUENCE:
        raise _BerError(f"expected an LDAPMessage (0x30), got tag 0x{first[0]:02x}")
    size = _length(take(1)[0], take)
    if size > _MAX_MESSAGE:
        raise _BerError(f"a message of {size} bytes is larger than {_MAX_MESSAGE}")
    return take(size)


def _element(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, contents, position after) of the element at ``pos``."""

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise _BerError("an element runs past the end of its message")
        pos += n
        return data[pos - n : pos]

    tag = take(1)[0]
    if tag & 0x1F == 0x1F:
        raise _BerError(f"tag 0x{tag:02x} (high tag number form) is not used by LDAP")
    size = _length(take(1)[0], take)
    return tag, take(size), pos


def _integer(contents: bytes, what: str) -> int:
    if not 1 <= len(contents) <= 5:
        raise _BerError(f"{what} is not a valid INTEGER")
    return int.from_bytes(contents, "big", signed=True)


def _encode(tag: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + contents


def _encode_int(tag: int, value: int) -> bytes:
    return _encode(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _result(op_tag: int, code: int, diagnostic: str, extra: bytes = b"") -> bytes:
    return _encode(
        op_tag,
        _encode_int(_ENUMERATED, code)
        + _encode(_OCTET_STRING, b"")  # matchedDN
        + _encode(_OCTET_STRING, diagnostic.encode())
        + extra,
    )


def _bind_response(message_id: int, code: int, diagnostic: str = "") -> bytes:
    """LDAPMessage{messageID, BindResponse{resultCode, matchedDN "", diagnosticMessage}}."""
    body = _encode_int(_INTEGER, message_id) + _result(_BIND_RESPONSE, code, diagnostic)
    return _encode(_SEQUENCE, body)


def _notice_of_disconnection(diagnostic: str) -> bytes:
    # RFC 4511, 4.4.1: the answer when the server cannot tell what the client wanted.
    notice = _result(
        _EXTENDED_RESPONSE,
        PROTOCOL_ERROR,
        diagnostic,
        _encode(_RESPONSE_NAME, _NOTICE_OF_DISCONNECTION),
    )
    return _encode(_SEQUENCE, _encode_int(_INTEGER, 0) + notice)


def _envelope(contents: bytes) -> tuple[int, int, bytes]:
    """(messageID, protocolOp tag, protocolOp contents); trailing controls are ignored."""
    tag, value, pos = _element(contents, 0)
    if tag != _INTEGER:
        raise _BerError("an LDAPMessage starts with its messageID")
    message_id = _integer(value, "the messageID")
    if not 0 <= message_id <= 2**31 - 1:
        raise _BerError("the messageID is out of range")
    op_tag, op, _ = _element(contents, pos)
    return message_id, op_tag, op


def _bind_request(op: bytes) -> tuple[int, bytes, int, bytes]:
    """(version, name, authentication tag, credentials) of a BindRequest's contents."""
    tag, version, pos = _element(op, 0)
    if tag != _INTEGER:
        raise _BerError("a BindRequest starts with its version")
    tag, name, pos = _element(op, pos)
    if tag != _OCTET_STRING:
        raise _BerError("a BindRequest's name is an OCTET STRING")
    auth_tag, credentials, _ = _element(op, pos)
    return _integer(version, "the version"), name, auth_tag, credentials


# ---------------------------------------------------------------------------------------- server


class LdapResponder:
    """The responder on a free port of 127.0.0.1; ``start()`` serves it in daemon threads."""

    def __init__(self, entra: Entra, log: RequestLog, faults: FaultBook) -> None:
        # Entra's own checks (signature, audience, known app), with times read leniently.
        self._verifier = Entra(
            entra.scenario, _SkewTolerantKey(entra.key.kid, entra.key.private), entra.issuer_keys
        )
        self.log = log
        self.faults = faults
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port; still known after ``stop()``, so a test can aim at a dead responder."""
        if self._port is None:
            raise RuntimeError("the LDAP responder was never started")
        return self._port

    @property
    def hba_line(self) -> str:
        return hba_line(self.port)

    def start(self) -> LdapResponder:
        server = _Server(self)
        self._server, self._port = server, server.port
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-ldap",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and drop open ones at once; safe to call twice."""
        self.stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()  # waits for serve_forever, which would never return if not started
            self._thread = None
        server.server_close()
        server.drop_connections()

    def check(self, dn: str, password: bytes) -> tuple[int, str, str]:
        """(resultCode, diagnosticMessage, who) for a simple bind of ``dn`` with ``password``."""
        if (
            not dn.startswith(DN_PREFIX)
            or not dn.endswith(DN_SUFFIX)
            or len(dn) == len(DN_PREFIX) + len(DN_SUFFIX)
        ):
            return INVALID_CREDENTIALS, f"the DN is not {DN_PREFIX}<role>{DN_SUFFIX}", "anonymous"
        role = dn[len(DN_PREFIX) : -len(DN_SUFFIX)]
        if not password:
            return INVALID_CREDENTIALS, "an unauthenticated bind (no password)", "anonymous"
        try:
            token = password.decode("ascii")
        except UnicodeDecodeError:
            return INVALID_CREDENTIALS, "the password is not an access token", "anonymous"
        try:
            principal = self._verifier.verify(token, {OSSRDBMS_RESOURCE}, tenant_id=None)
        except TokenRejected as exc:
            # PostgreSQL logs the diagnostic; make sure no reason ever echoes the token.
            return INVALID_CREDENTIALS, exc.reason.replace(token, "***"), "anonymous"
        who = str(principal.claims.get("appid") or principal.app.client_id)
        if principal.app.name != role:
            # Role names are case-sensitive, and so is the match, as on Azure.
            return (
                INVALID_CREDENTIALS,
                f"the token is for {principal.app.name!r}, not for the role {role!r}",
                who,
            )
        return SUCCESS, "", who

    def bind(self, message_id: int, op: bytes) -> tuple[bytes | None, bool]:
        """The answer to a BindRequest (None: send nothing) and whether to keep the connection."""
        started = time.time()
        try:
            version, name, auth_tag, credentials = _bind_request(op)
        except _BerError as exc:
            self._log(started, "", PROTOCOL_ERROR, "anonymous")
            return _bind_response(message_id, PROTOCOL_ERROR, str(exc)), False
        try:
            dn = name.decode("utf-8")
        except UnicodeDecodeError:
            dn = name.decode("utf-8", "replace")
            self._log(started, dn, INVALID_CREDENTIALS, "anonymous")
            return _bind_response(message_id, INVALID_CREDENTIALS, "the DN is not UTF-8"), True
        if version != 3:
            self._log(started, dn, PROTOCOL_ERROR, "anonymous")
            return _bind_response(message_id, PROTOCOL_ERROR, "only LDAPv3 is supported"), False
        if auth_tag != _SIMPLE_AUTH:
            self._log(started, dn, PROTOCOL_ERROR, "anonymous")
            return _bind_response(
                message_id, PROTOCOL_ERROR, "only simple bind is supported"
            ), False

        delay_ms, fault = self.faults.pick("ldap", "BIND", "127.0.0.1", dn)
        if delay_ms and self.stopping.wait(delay_ms / 1000):
            return None, False
        if fault is not None and fault.hang_s:
            self.stopping.wait(fault.hang_s)
            self._log(started, dn, _NO_ANSWER, "hang")
            return None, False
        if fault is not None and fault.malformed:
            self._log(started, dn, _NO_ANSWER, "malformed")
            return b"\x04\x07garbage", False
        if fault is not None and fault.status is not None:
            self._log(started, dn, UNAVAILABLE, "anonymous")
            message = f"a sandbox fault rule answers unavailable (HTTP {fault.status})"
            return _bind_response(message_id, UNAVAILABLE, message), True

        code, diagnostic, who = self.check(dn, credentials)
        self._log(started, dn, code, who)
        return _bind_response(message_id, code, diagnostic), True

    def _log(self, started: float, dn: str, status: int, who: str) -> None:
        self.log.add(
            LoggedRequest(started, "ldap", "BIND", "127.0.0.1", dn[:_LOGGED_DN_CHARS], status, who)
        )


class _SkewTolerantKey(SigningKey):
    """The sandbox Entra's key, checking exp/nbf/iat with CLOCK_SKEW_S of leeway."""

    def verify(self, token: str, **options: Any) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            self.private.public_key(),
            algorithms=["RS256"],
            leeway=CLOCK_SKEW_S,
            options=cast(Any, {"verify_aud": False, **options}),
        )
        return claims


class _Server(LoopbackServer):
    def __init__(self, responder: LdapResponder) -> None:
        super().__init__(_Connection)
        self.responder = responder


class _Connection(socketserver.StreamRequestHandler):
    server: _Server
    timeout = _IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # one small answer per bind; do not let it wait for an ACK

    def handle(self) -> None:
        self.server.opened(self.connection)
        try:
            self._serve()
        except (_Disconnected, OSError):
            pass
        finally:
            self.server.closed(self.connection)

    def _serve(self) -> None:
        responder = self.server.responder
        while not responder.stopping.is_set():
            try:
                contents = _read_message(self.rfile)
                if contents is None:
                    return
                message_id, op_tag, op = _envelope(contents)
            except _BerError as exc:
                self.wfile.write(_notice_of_disconnection(str(exc)))
                return
            if op_tag == _UNBIND_REQUEST:
                return
            if op_tag == _ABANDON_REQUEST:
                continue  # every answer is sent before the next request is read
            if op_tag != _BIND_REQUEST:
                self.wfile.write(
                    _notice_of_disconnection(f"operation 0x{op_tag:02x} is not supported")
                )
                return
            answer, keep = responder.bind(message_id, op)
            if answer is not None:
                self.wfile.write(answer)
            if not keep:
                return

"""TDS 7.4 as ODBC Driver 18 speaks it to Azure SQL: the packets and tokens the stand-in reads
and writes (MS-TDS). Only what a token login and four statements need; pure functions.

Packets: an 8-byte header (type, status, big-endian length including the header, SPID,
packet id, window) and up to the negotiated packet size of data; status bit 0x01 ends a
message. Tokens in a tabular result are little-endian; B_VARCHAR is a 1-byte count of UTF-16
characters, US_VARCHAR a 2-byte one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Packet types.
SQL_BATCH = 0x01
RPC = 0x03
TABULAR_RESULT = 0x04
ATTENTION = 0x06
TRANSACTION_MANAGER = 0x0E
LOGIN7 = 0x10
PRELOGIN = 0x12
EOM = 0x01
HEADER = struct.Struct(">BBHHBB")

# PRELOGIN options and ENCRYPTION values.
PL_VERSION, PL_ENCRYPTION, PL_INSTOPT, PL_THREADID, PL_MARS = 0x00, 0x01, 0x02, 0x03, 0x04
PL_TRACEID, PL_FEDAUTHREQUIRED, PL_NONCEOPT, PL_TERMINATOR = 0x05, 0x06, 0x07, 0xFF
ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ = 0x00, 0x01, 0x02, 0x03

# LOGIN7 feature extensions.
FEATURE_FEDAUTH = 0x02
FEATURE_TERMINATOR = 0xFF
FEDAUTH_LIBRARY_SECURITYTOKEN = 0x01

# Tokens.
TOKEN_COLMETADATA = 0x81
TOKEN_ERROR = 0xAA
TOKEN_INFO = 0xAB
TOKEN_LOGINACK = 0xAD
TOKEN_FEATUREEXTACK = 0xAE
TOKEN_ROW = 0xD1
TOKEN_ENVCHANGE = 0xE3
TOKEN_DONE = 0xFD
DONE_FINAL, DONE_ERROR, DONE_COUNT, DONE_ATTN = 0x00, 0x02, 0x10, 0x20
CMD_SELECT = 0xC1
ENV_DATABASE, ENV_LANGUAGE, ENV_PACKETSIZE, ENV_COLLATION = 1, 2, 4, 7
ENV_BEGIN_TRAN, ENV_COMMIT_TRAN, ENV_ROLLBACK_TRAN = 8, 9, 10
TM_BEGIN_XACT, TM_COMMIT_XACT, TM_ROLLBACK_XACT = 5, 7, 8

# Column types.
INT4TYPE = 0x38
NVARCHARTYPE = 0xE7
# SQL_Latin1_General_CP1_CI_AS: LCID 0x0409 with its flags, sort id 52.
COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])

TDS_74 = 0x74000004
# Azure SQL Database reports itself as 12.0.2000.8.
SERVER_VERSION = (12, 0, 2000, 8)


class TdsError(Exception):
    """Bytes that are not the TDS message they should be."""


# ---------------------------------------------------------------------------------------- packets


def packets(kind: int, data: bytes, size: int = 4096, spid: int = 0) -> bytes:
    """`data` as one message of `kind`, cut into packets of at most `size` bytes."""
    room = max(size - HEADER.size, 1)
    chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
    out = bytearray()
    for number, chunk in enumerate(chunks, start=1):
        status = EOM if number == len(chunks) else 0
        out += HEADER.pack(kind, status, HEADER.size + len(chunk), spid, number % 256, 0)
        out += chunk
    return bytes(out)


def parse_header(header: bytes) -> tuple[int, int, int]:
    """(type, status, data length) of a packet header."""
    kind, status, length, _spid, _number, _window = HEADER.unpack(header)
    if length < HEADER.size:
        raise TdsError(f"a packet length of {length} is shorter than its header")
    return kind, status, length - HEADER.size


# ---------------------------------------------------------------------------------------- PRELOGIN


def parse_prelogin(data: bytes) -> dict[int, bytes]:
    """The options of a PRELOGIN message, by option token."""
    options: dict[int, bytes] = {}
    pos = 0
    while True:
        if pos >= len(data):
            raise TdsError("PRELOGIN options have no terminator")
        token = data[pos]
        if token == PL_TERMINATOR:
            return options
        if pos + 5 > len(data):
            raise TdsError("a PRELOGIN option runs past the message")
        offset, length = struct.unpack_from(">HH", data, pos + 1)
        if offset + length > len(data):
            raise TdsError(f"PRELOGIN option 0x{token:02x} points past the message")
        options[token] = data[offset : offset + length]
        pos += 5


def prelogin_response(encryption: int, fedauth_required: bool | None) -> bytes:
    """The server's PRELOGIN answer: version, encryption, instance, thread id, MARS and, when
    the client asked, FEDAUTHREQUIRED."""
    major, minor, build, sub = SERVER_VERSION
    version = struct.pack(">BBHH", major, minor, build, sub)
    options: list[tuple[int, bytes]] = [
        (PL_VERSION, version),
        (PL_ENCRYPTION, bytes([encryption])),
        (PL_INSTOPT, b"\x00"),
        (PL_THREADID, b""),
        (PL_MARS, b"\x00"),
    ]
    if fedauth_required is not None:
        options.append((PL_FEDAUTHREQUIRED, b"\x01" if fedauth_required else b"\x00"))
    offset = len(options) * 5 + 1
    table, body = bytearray(), bytearray()
    for token, value in options:
        table += struct.pack(">BHH", token, offset + len(body), len(value))
        body += value
    return bytes(table) + bytes([PL_TERMINATOR]) + bytes(body)


# ---------------------------------------------------------------------------------------- LOGIN7


@dataclass
class Login:
    """What the stand-in needs from a LOGIN7 message."""

    tds_version: int
    packet_size: int
    host_name: str
    user_name: str
    app_name: str
    server_name: str
    database: str
    fedauth_library: int | None = None
    token: str | None = None
    features: list[int] = field(default_factory=list)


def _text(data: bytes, offset: int, chars: int) -> str:
    if offset + 2 * chars > len(data):
        raise TdsError("a LOGIN7 field points past the message")
    return data[offset : offset + 2 * chars].decode("utf-16-le", "replace")


def parse_login7(data: bytes) -> Login:
    if len(data) < 94:
        raise TdsError("a LOGIN7 message is at least 94 bytes")
    _length, version, packet_size = struct.unpack_from("<III", data, 0)
    option_flags3 = data[27]

    def field_at(pos: int) -> tuple[int, int]:
        offset, count = struct.unpack_from("<HH", data, pos)
        return int(offset), int(count)

    login = Login(
        tds_version=version,
        packet_size=packet_size,
        host_name=_text(data, *field_at(36)),
        user_name=_text(data, *field_at(40)),
        app_name=_text(data, *field_at(48)),
        server_name=_text(data, *field_at(52)),
        database=_text(data, *field_at(68)),
    )
    if option_flags3 & 0x10:  # fExtension: ibExtension points at the FeatureExt's offset
        ext_offset, ext_length = field_at(56)
        if ext_length < 4 or ext_offset + 4 > len(data):
            raise TdsError("the LOGIN7 extension points past the message")
        (pos,) = struct.unpack_from("<I", data, ext_offset)
        _features(data, int(pos), login)
    return login


def _features(data: bytes, pos: int, login: Login) -> None:
    while True:
        if pos >= len(data):
            raise TdsError("the LOGIN7 feature extensions have no terminator")
        feature = data[pos]
        if feature == FEATURE_TERMINATOR:
            return
        if pos + 5 > len(data):
            raise TdsError("a LOGIN7 feature runs past the message")
        (length,) = struct.unpack_from("<I", data, pos + 1)
        value = data[pos + 5 : pos + 5 + length]
        if len(value) != length:
            raise TdsError(f"LOGIN7 feature 0x{feature:02x} runs past the message")
        login.features.append(feature)
        if feature == FEATURE_FEDAUTH and value:
            login.fedauth_library = value[0] >> 1
            if login.fedauth_library == FEDAUTH_LIBRARY_SECURITYTOKEN and len(value) >= 5:
                (size,) = struct.unpack_from("<I", value, 1)
                raw = value[5 : 5 + size]
                login.token = raw.decode("utf-16-le", "replace")
        pos += 5 + length


# ---------------------------------------------------------------------------------------- tokens


def b_varchar(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return bytes([len(raw) // 2]) + raw


def us_varchar(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return struct.pack("<H", len(raw) // 2) + raw


def _with_length(token: int, body: bytes) -> bytes:
    return bytes([token]) + struct.pack("<H", len(body)) + body


def envchange(kind: int, new: str, old: str = "") -> bytes:
    return _with_length(TOKEN_ENVCHANGE, bytes([kind]) + b_varchar(new) + b_varchar(old))


def envchange_bytes(kind: int, new: bytes, old: bytes = b"") -> bytes:
    body = bytes([kind, len(new)]) + new + bytes([len(old)]) + old
    return _with_length(TOKEN_ENVCHANGE, body)


def message(token: int, number: int, state: int, severity: int, text: str, server: str) -> bytes:
    """An ERROR (0xAA) or INFO (0xAB) token."""
    body = (
        struct.pack("<IBB", number, state, severity)
        + us_varchar(text)
        + b_varchar(server)
        + b_varchar("")
        + struct.pack("<I", 1)
    )
    return _with_length(token, body)


def error(number: int, state: int, severity: int, text: str, server: str) -> bytes:
    return message(TOKEN_ERROR, number, state, severity, text, server)


def loginack(program: str = "Microsoft SQL Server") -> bytes:
    major, minor, build, sub = SERVER_VERSION
    body = (
        b"\x01"  # SQL_TSQL
        + struct.pack(">I", TDS_74)
        + b_varchar(program)
        + bytes([major, minor, build >> 8, build & 0xFF])
    )
    del sub
    return _with_length(TOKEN_LOGINACK, body)


def featureextack(features: dict[int, bytes]) -> bytes:
    out = bytearray([TOKEN_FEATUREEXTACK])
    for feature, data in features.items():
        out += bytes([feature]) + struct.pack("<I", len(data)) + data
    out.append(FEATURE_TERMINATOR)
    return bytes(out)


def done(status: int = DONE_FINAL, command: int = 0, rows: int = 0) -> bytes:
    return bytes([TOKEN_DONE]) + struct.pack("<HHQ", status, command, rows)


@dataclass(frozen=True)
class Column:
    name: str
    value: int | str | None


def result_set(columns: list[Column]) -> bytes:
    """COLMETADATA, one ROW and its DONE (count 1): an int is INT4, text NVARCHAR."""
    meta = bytearray([TOKEN_COLMETADATA]) + struct.pack("<H", len(columns))
    row = bytearray([TOKEN_ROW])
    for column in columns:
        if isinstance(column.value, int):
            meta += struct.pack("<IH", 0, 0x0000) + bytes([INT4TYPE])
            row += struct.pack("<i", column.value)
        else:
            text = (column.value or "").encode("utf-16-le")
            size = max(256, len(text) + (len(text) % 2))
            meta += struct.pack("<IH", 0, 0x0001) + bytes([NVARCHARTYPE])
            meta += struct.pack("<H", size) + COLLATION
            row += b"\xff\xff" if column.value is None else struct.pack("<H", len(text)) + text
        meta += b_varchar(column.name)
    return bytes(meta) + bytes(row) + done(DONE_COUNT, CMD_SELECT, 1)


def batch_text(data: bytes) -> str:
    """The SQL of a SQL_BATCH message (after its ALL_HEADERS)."""
    if len(data) < 4:
        raise TdsError("a SQL batch is at least its ALL_HEADERS length")
    (total,) = struct.unpack_from("<I", data, 0)
    if total > len(data):
        raise TdsError("a SQL batch's ALL_HEADERS run past the message")
    return data[total:].decode("utf-16-le", "replace")


def transaction_request(data: bytes) -> int:
    """The request type of a transaction manager message (after its ALL_HEADERS)."""
    if len(data) < 6:
        raise TdsError("a transaction manager request is too short")
    (total,) = struct.unpack_from("<I", data, 0)
    if total + 2 > len(data):
        raise TdsError("a transaction manager request runs past the message")
    (kind,) = struct.unpack_from("<H", data, total)
    return int(kind)

"""Azure SQL connections with the job's Entra tokens: Microsoft's mssql-python driver (ODBC
Driver 18 inside its wheel), or pyodbc with a system ODBC driver where only that is installed.

Every new connection takes a fresh token for the connection's scope (the cloud's database
scope unless the profile names another), handed to the driver as ODBC's
SQL_COPT_SS_ACCESS_TOKEN pre-connect attribute, which works for any cloud (mssql-python's
`token_provider=` always asks for the public cloud's scope). Encryption is on and the
server's certificate is checked against the system's trusted roots (OpenSSL's, so
SSL_CERT_FILE); nothing here turns that off. Login refusals become diagnoses
(`errors.sql_login_refused`).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azpytest import errors
from azpytest.clouds import CLOUDS, SQL_COPT_SS_ACCESS_TOKEN, Cloud
from azpytest.identity import unverified_claims
from azpytest.profiles import azure_sql_token_struct

# How long a login may take (TCP, TLS and the login itself), in seconds.
LOGIN_TIMEOUT_S = 30
MSSQL_PYTHON = "mssql-python"
PYODBC = "pyodbc"
DRIVERS = (MSSQL_PYTHON, PYODBC)


@dataclass(frozen=True)
class Target:
    """Where to log in: host, port, database; and how: an Entra token or a SQL login."""

    host: str
    port: int
    database: str
    scope: str | None  # entra: the token's scope
    user: str | None = None  # SQL logins only
    password: str | None = None


def _braced(value: str) -> str:
    """An ODBC connection string value, braced so `;` and `}` in it cannot end it."""
    return "{" + value.replace("}", "}}") + "}"


def connection_string(target: Target) -> str:
    """Server, database and encryption on, certificate checked (no TrustServerCertificate)."""
    parts = [
        f"Server=tcp:{target.host},{target.port}",
        f"Database={_braced(target.database)}",
        "Encrypt=yes",
    ]
    if target.scope is None:
        parts += [f"UID={_braced(target.user or '')}", f"PWD={_braced(target.password or '')}"]
    return ";".join(parts)


class DriverMissing(Exception):
    """No driver could be loaded: one line saying what to install (errors.sql_no_driver)."""


def _libltdl_loads() -> bool:
    """Whether the dynamic loader finds libltdl.so.7, which the ODBC driver manager inside
    mssql-python's wheel needs (Debian's libltdl7). mssql-python imports without it and
    fails only at connect: "Failed to load the driver"."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        ctypes.CDLL("libltdl.so.7")
    except OSError:
        return False
    return True


def load_driver(wanted: str | None = None) -> tuple[str, Any]:
    """(name, module) of the driver to use: mssql-python when it loads, else pyodbc with a SQL
    Server ODBC driver. An unknown name is an errors.Diagnosis; no driver, DriverMissing."""
    if wanted is not None and wanted not in DRIVERS:
        raise errors.sql_unknown_driver(wanted, DRIVERS)
    problems: list[str] = []
    if wanted in (None, MSSQL_PYTHON):
        try:
            import mssql_python  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            problems.append(errors.sql_driver_not_loaded(MSSQL_PYTHON, str(exc)))
        else:
            if _libltdl_loads():
                return MSSQL_PYTHON, mssql_python
            problems.append(errors.LIBLTDL_MISSING)
    if wanted in (None, PYODBC):
        try:
            import pyodbc  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            problems.append(errors.sql_driver_not_loaded(PYODBC, str(exc)))
        else:
            if any("SQL Server" in name for name in pyodbc.drivers()):
                return PYODBC, pyodbc
            problems.append(errors.PYODBC_NO_SQL_DRIVER)
    raise DriverMissing(errors.sql_no_driver(problems))


def connect(
    target: Target,
    token_for: Callable[[str], str],
    *,
    cloud: Cloud,
    driver: str | None = None,
    **kwargs: Any,
) -> Any:
    """A new DB-API connection. `token_for(scope)` gives a current token (fresh per call);
    `kwargs` go to the driver's connect()."""
    name, module = load_driver(driver)
    conn_str = connection_string(target)
    attrs: dict[int, Any] = dict(kwargs.pop("attrs_before", None) or {})
    token = None
    if target.scope is not None:
        token = token_for(target.scope)
        attrs[SQL_COPT_SS_ACCESS_TOKEN] = azure_sql_token_struct(token)
    if name == PYODBC:
        odbc = [d for d in module.drivers() if "SQL Server" in d][-1]
        conn_str = f"Driver={_braced(odbc)};{conn_str}"
    kwargs.setdefault("timeout", LOGIN_TIMEOUT_S)
    try:
        return module.connect(conn_str, attrs_before=attrs or None, **kwargs)
    except module.Error as exc:
        diagnosis = diagnose(str(exc), target, cloud, token)
        if diagnosis is None:
            raise
        raise diagnosis from None


_IP = re.compile(r"Client with IP address '([^']+)' is not allowed")
_VERIFY = re.compile(r"certificate verify failed:?([^\]]*)")
_SERVER = re.compile(r"Cannot open server '([^']+)'")


def diagnose(message: str, target: Target, cloud: Cloud, token: str | None) -> Any:
    """The diagnosis of a driver's login error text, or None when it is not a login refusal."""
    claims = unverified_claims(token) if token else {}
    if "is not allowed to access the server" in message:
        found = _IP.search(message)
        server = _SERVER.search(message)
        return errors.sql_firewall(
            target.host,
            found.group(1) if found else "<runner address>",
            server.group(1) if server else _server_name(target.host),
        )
    if "Login failed for user '<token-identified principal>'" in message:
        if "Incorrect or invalid token" in message or "not currently configured" in message:
            return errors.sql_token_refused(
                target.host, target.scope or "", expected_scope(target.host, cloud), claims
            )
        if "Token is expired" in message:
            return errors.sql_token_expired(target.host, claims)
        return errors.sql_not_a_user(target.host, target.database, claims)
    if "certificate verify failed" in message:
        found = _VERIFY.search(message)
        reason = found.group(1).strip() if found else "?"
        return errors.sql_certificate_untrusted(
            target.host, reason, os.environ.get("SSL_CERT_FILE")
        )
    if "is not currently available" in message:
        return errors.sql_database_unavailable(target.host, target.database)
    return None


def expected_scope(host: str, cloud: Cloud) -> str:
    """The database scope a server takes: its name's cloud, else the job's cloud."""
    for candidate in CLOUDS.values():
        if host.lower().endswith("." + candidate.database_suffix):
            return candidate.sql_scope
    return cloud.sql_scope


def _server_name(host: str) -> str:
    for candidate in CLOUDS.values():
        suffix = "." + candidate.database_suffix
        if host.lower().endswith(suffix):
            return host[: -len(suffix)]
    return "<server>"

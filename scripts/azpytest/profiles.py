"""Connection profiles for the fixtures, and a dbt `profiles.yml`, from the `profiles` input.

The input is YAML. Each field of a connection is a literal or `{secret: <Key Vault secret>}`;
a password is always a secret:

```yaml
connections:
  warehouse:
    kind: postgres              # postgres | azure-sql
    host: {secret: pg-host}
    port: 5432                  # optional: 5432 for postgres, 1433 for azure-sql
    database: {secret: pg-database}
    user: {secret: pg-user}     # optional only for azure-sql with auth: entra
    auth: password              # password | entra
    password: {secret: pg-password}   # required for password, forbidden for entra
    sslmode: prefer             # optional, postgres only
    scope: ...                  # optional, entra only: the token scope (sovereign clouds)
dbt:                            # optional: write profiles.yml and export DBT_PROFILES_DIR
  profile: jaffle_shop          # the `profile:` of dbt_project.yml
  target: ci                    # default ci
  connection: warehouse         # optional when there is one connection
  schema: dbt_ci
  threads: 4                    # default 4
  type: sqlserver               # optional: postgres for postgres; sqlserver (default) or
                                # fabric for azure-sql
  driver: ODBC Driver 18 for SQL Server   # optional, sqlserver/fabric: the ODBC driver
```

`prepare` fetches every secret field with the other secrets (masked) into a variable named
after the connection and field, `AZPYTEST_<CONNECTION>_<FIELD>` (`warehouse` + `password` ->
`AZPYTEST_WAREHOUSE_PASSWORD`), and `write` puts two files, mode 0600, in the run folder:

- `profiles.yml` (with a dbt section): each secret field is `{{ env_var('AZPYTEST_...') }}`,
  so no Key Vault value is ever in the file. An `entra` connection's password is an access
  token that no file can hold for long: the target reads `AZPYTEST_<CONNECTION>_TOKEN`, which
  the process that runs dbt provides (`azpytest.dbt.run_dbt` fetches a fresh one for every dbt
  invocation). postgres targets take the token as the password, as Azure Database for
  PostgreSQL does (scope `https://ossrdbms-aad.database.windows.net/.default`); sqlserver and
  fabric targets use the adapters' `authentication: ActiveDirectoryAccessToken` with
  `access_token` (scope `https://database.windows.net/.default`); SQL logins use
  `authentication: sql` (sqlserver only: Fabric warehouses take Entra logins only).
- `connections.yaml`: the same connections with `{env: NAME, secret: NAME}` in place of each
  secret field, read by `load_connections` (the pytest fixtures) at use time.

`write` returns the variables to export: `AZPYTEST_CONNECTIONS` (the connections file) and,
with a dbt section, `DBT_PROFILES_DIR` (the run folder).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from azpytest import errors
from azpytest.clouds import PUBLIC, Cloud
from azpytest.inputs import SECRET_NAME, InputError, SecretSpec, load_yaml
from azpytest.rundir import CONNECTIONS, PROFILES, RunDir

INPUT = "profiles"
CONNECTIONS_FILE = CONNECTIONS
PROFILES_FILE = PROFILES
DBT_PROJECT_FILE = "dbt_project.yml"

KINDS = ("postgres", "azure-sql")
AUTHS = ("password", "entra")
DEFAULT_PORT = {"postgres": 5432, "azure-sql": 1433}
DBT_TYPES = {"postgres": ("postgres",), "azure-sql": ("sqlserver", "fabric")}
DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

_CONNECTION_KEYS = (
    "kind",
    "host",
    "port",
    "database",
    "user",
    "auth",
    "password",
    "sslmode",
    "scope",
)
_DBT_KEYS = ("profile", "target", "connection", "schema", "threads", "type", "driver")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_DBT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,126}$")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_JINJA = ("{{", "{%", "{#")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@-]*$")


# ---------------------------------------------------------------------------- the input


@dataclass(frozen=True)
class Value:
    """One connection field: a literal, or a Key Vault secret that `prepare` exports to `env`."""

    literal: str | int | None = None
    secret: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class ConnectionSpec:
    name: str
    kind: str
    host: Value
    port: Value
    database: Value
    user: Value | None
    auth: str
    password: Value | None  # a secret for auth: password; None for entra
    sslmode: str | None
    scope: str | None  # entra: the token scope

    @property
    def token_env(self) -> str:
        """The variable that carries an entra connection's token to dbt."""
        return variable(self.name, "token")

    def values(self) -> list[tuple[str, Value]]:
        fields = [("host", self.host), ("port", self.port), ("database", self.database)]
        fields += [("user", self.user)] if self.user else []
        fields += [("password", self.password)] if self.password else []
        return fields


@dataclass(frozen=True)
class DbtSpec:
    profile: str
    target: str
    connection: str
    schema: str
    threads: int
    type: str  # postgres | sqlserver | fabric
    driver: str | None  # the ODBC driver of sqlserver/fabric targets


@dataclass(frozen=True)
class ProfilesSpec:
    connections: tuple[ConnectionSpec, ...]
    dbt: DbtSpec | None = None

    def connection(self, name: str) -> ConnectionSpec:
        return next(c for c in self.connections if c.name == name)

    def required_secrets(self) -> tuple[SecretSpec, ...]:
        """One secret per Key Vault field, to the field's own variable."""
        return tuple(
            SecretSpec(source=value.secret, env=value.env)
            for connection in self.connections
            for _, value in connection.values()
            if value.secret is not None
        )


def variable(connection: str, field: str) -> str:
    """`warehouse`, `password` -> `AZPYTEST_WAREHOUSE_PASSWORD`."""
    return f"AZPYTEST_{connection}_{field}".upper().replace("-", "_")


def _fail(where: str, problem: str) -> InputError:
    return InputError(INPUT, f"{where}: {problem}")


def _unknown(where: str, key: Any, known: tuple[str, ...]) -> InputError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"use {', '.join(known)}"
    return _fail(where, f"unknown field {str(key)!r}; {hint}")


def parse(text: str, cloud: Cloud = PUBLIC) -> ProfilesSpec:
    """Validate the `profiles` input; any problem is one InputError line naming the field. An
    entra connection without a scope gets `cloud`'s for its kind."""
    data = load_yaml(
        INPUT, text, "not valid YAML{where}; write a `connections:` mapping (and optionally `dbt:`)"
    )
    if not isinstance(data, dict):
        raise InputError(INPUT, "expected a mapping with `connections:` (and optionally `dbt:`)")
    for key in data:
        if key not in ("connections", "dbt"):
            raise _unknown("top level", key, ("connections", "dbt"))
    raw = data.get("connections")
    if not isinstance(raw, dict) or not raw:
        raise _fail(
            "connections",
            "expected a mapping of connection names to their fields, e.g. "
            "`connections: {warehouse: {kind: postgres, ...}}`",
        )
    for name in raw:
        if not isinstance(name, str):  # `true:` would become a connection named True
            raise _fail(
                "connections",
                f"the name {name!r} is not text; quote it (YAML read another type)",
            )
    connections = tuple(_connection(name, fields, cloud) for name, fields in raw.items())
    variables: dict[str, str] = {}
    for connection in connections:
        for name in [v.env for _, v in connection.values() if v.env] + [connection.token_env]:
            if name in variables and variables[name] != connection.name:
                raise _fail(
                    f"connections.{connection.name}",
                    f"its variables clash with connection {variables[name]!r} ({name}); "
                    "rename one of them",
                )
            variables[name] = connection.name
    dbt = _dbt(data["dbt"], connections) if "dbt" in data else None
    return ProfilesSpec(connections=connections, dbt=dbt)


def _connection(name: str, fields: Any, cloud: Cloud = PUBLIC) -> ConnectionSpec:
    where = f"connections.{name}"
    if not _NAME.match(name):
        raise _fail(where, "a connection name is a letter then letters, digits, _ or - (up to 63)")
    if not isinstance(fields, dict):
        raise _fail(where, "expected a mapping of fields (kind, host, database, user, auth, ...)")
    for key in fields:
        if key not in _CONNECTION_KEYS:
            raise _unknown(where, key, _CONNECTION_KEYS)
    kind = fields.get("kind")
    if kind not in KINDS:
        raise _fail(
            f"{where}.kind",
            f"{kind!r} is not a connection kind; use {' or '.join(KINDS)}"
            if kind is not None
            else f"required: {' or '.join(KINDS)}",
        )
    auth = fields.get("auth", "password")
    if auth not in AUTHS:
        raise _fail(f"{where}.auth", f"{auth!r} is not an auth mode; use password or entra")

    def value(field: str, *, required: bool = True) -> Value | None:
        raw = fields.get(field)
        if raw is None:
            if required:
                raise _fail(f"{where}.{field}", "required: a literal or {secret: <secret name>}")
            return None
        return _value(f"{where}.{field}", raw, variable(name, field), port=field == "port")

    password = fields.get("password")
    if auth == "entra" and password is not None:
        raise _fail(
            f"{where}.password",
            "auth: entra logs in with an access token; remove password (or use auth: password)",
        )
    if auth == "password" and not (isinstance(password, dict) and "secret" in password):
        raise _fail(
            f"{where}.password",
            "required for auth: password, as {secret: <secret name>}: a password is read "
            "from Key Vault, never written in the input",
        )
    sslmode = fields.get("sslmode")
    if sslmode is not None and kind != "postgres":
        raise _fail(f"{where}.sslmode", "applies to postgres connections only; remove it")
    if sslmode is not None and sslmode not in SSLMODES:
        raise _fail(f"{where}.sslmode", f"{sslmode!r} is not a sslmode; use {', '.join(SSLMODES)}")
    scope = fields.get("scope")
    if scope is not None and auth != "entra":
        raise _fail(f"{where}.scope", "applies to auth: entra only; remove it")
    if scope is not None and not (isinstance(scope, str) and scope.endswith("/.default")):
        raise _fail(f"{where}.scope", f"{scope!r} is not a scope (https://<resource>/.default)")
    port = value("port", required=False) or Value(literal=DEFAULT_PORT[kind])
    return ConnectionSpec(
        name=name,
        kind=kind,
        host=_required(value("host")),
        port=port,
        database=_required(value("database")),
        user=value("user", required=not (kind == "azure-sql" and auth == "entra")),
        auth=auth,
        password=value("password") if auth == "password" else None,
        sslmode=sslmode,
        scope=(scope or cloud.token_scope(kind)) if auth == "entra" else None,
    )


def _required(value: Value | None) -> Value:
    assert value is not None  # value(..., required=True) raised otherwise
    return value


def _value(where: str, raw: Any, env: str, *, port: bool = False) -> Value:
    if isinstance(raw, dict):
        if set(raw) != {"secret"}:
            raise _fail(where, "write a literal or {secret: <secret name>}")
        secret = raw["secret"]
        if not isinstance(secret, str) or not SECRET_NAME.match(secret):
            raise _fail(
                where,
                f"{secret!r} is not a Key Vault secret name (1-127 letters, digits and hyphens)",
            )
        return Value(secret=secret, env=env)
    if port:
        text = str(raw)
        if isinstance(raw, bool) or not text.isdigit() or not 0 < int(text) < 65536:
            raise _fail(where, f"{raw!r} is not a port (1-65535) or {{secret: <secret name>}}")
        return Value(literal=int(text))
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or not str(raw).strip():
        raise _fail(where, f"{raw!r} is not a literal string or {{secret: <secret name>}}")
    if any(mark in str(raw) for mark in _JINJA):
        raise _fail(where, "a literal may not hold Jinja ({{, {%, {#): dbt would render it")
    return Value(literal=str(raw))


def _dbt(raw: Any, connections: tuple[ConnectionSpec, ...]) -> DbtSpec:
    if not isinstance(raw, dict):
        raise _fail("dbt", "expected a mapping (profile, target, connection, schema, threads)")
    for key in raw:
        if key not in _DBT_KEYS:
            raise _unknown("dbt", key, _DBT_KEYS)

    def text(field: str, pattern: re.Pattern[str], default: str | None, rule: str) -> str:
        value = raw.get(field, default)
        if value is None:
            raise _fail(f"dbt.{field}", f"required: {rule}")
        if not isinstance(value, str) or not pattern.match(value):
            raise _fail(f"dbt.{field}", f"{value!r} is not {rule}")
        return value

    names = [c.name for c in connections]
    if "connection" not in raw and len(connections) > 1:
        raise _fail(
            "dbt.connection", f"required with several connections: one of {', '.join(names)}"
        )
    name = str(raw.get("connection", names[0]))
    if name not in names:
        raise _fail(
            "dbt.connection", f"{name!r} is not a connection above; use one of {', '.join(names)}"
        )
    connection = next(c for c in connections if c.name == name)
    types = DBT_TYPES[connection.kind]
    dbt_type = raw.get("type", types[0])
    if dbt_type not in types:
        raise _fail(
            "dbt.type",
            f"{dbt_type!r} cannot use the {connection.kind} connection {name!r}; "
            f"use {' or '.join(types)}",
        )
    if dbt_type == "fabric" and connection.auth != "entra":
        raise _fail(
            "dbt.type",
            f"Fabric warehouses take Entra logins only: set auth: entra on connection {name!r}",
        )
    driver = raw.get("driver")
    if driver is not None and dbt_type == "postgres":
        raise _fail("dbt.driver", "applies to sqlserver and fabric targets only; remove it")
    if driver is not None and (not isinstance(driver, str) or not driver.strip()):
        raise _fail("dbt.driver", f"{driver!r} is not an ODBC driver name")
    if isinstance(driver, str) and any(mark in driver for mark in (*_JINJA, "{", "}", ";")):
        raise _fail("dbt.driver", f"{driver!r} is not an ODBC driver name")
    threads = raw.get("threads", 4)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 < threads <= 64:
        raise _fail("dbt.threads", f"{threads!r} is not a whole number from 1 to 64")
    return DbtSpec(
        profile=text(
            "profile", _DBT_NAME, None, "a dbt profile name (the profile: of dbt_project.yml)"
        ),
        target=text("target", _DBT_NAME, "ci", "a dbt target name (letters, digits, _ and -)"),
        connection=name,
        schema=text(
            "schema", _SCHEMA, None, "a schema name (a letter or _, then letters, digits, _ or $)"
        ),
        threads=threads,
        type=dbt_type,
        driver=(driver or DEFAULT_DRIVER) if dbt_type != "postgres" else None,
    )


def check_project(spec: ProfilesSpec, folder: Path) -> None:
    """The dbt section's profile must be the `profile:` of `folder`'s dbt_project.yml (dbt
    otherwise fails with "Could not find profile named ..."). A project that names no profile,
    or names it with Jinja, is not checked."""
    assert spec.dbt is not None
    path = folder / DBT_PROJECT_FILE
    try:
        data = load_yaml(str(path), path.read_text(encoding="utf-8"), "not valid YAML{where}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise _fail("dbt.profile", f"cannot read {path} ({reason})") from None
    expected = data.get("profile") if isinstance(data, dict) else None
    if not isinstance(expected, str) or any(mark in expected for mark in _JINJA):
        return
    if expected != spec.dbt.profile:
        raise _fail(
            "dbt.profile",
            f"{spec.dbt.profile!r} is not the profile {path} names: write profile: {expected}",
        )


# ---------------------------------------------------------------------------- the files


def _scalar(value: str | int) -> str:
    """A YAML scalar: plain where that reads back the same, else double-quoted."""
    if isinstance(value, int):
        return str(value)
    if _PLAIN.match(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _env_var(name: str, *, number: bool = False, default: str | None = None) -> str:
    fallback = f", '{default}'" if default is not None else ""
    cast = " | as_number" if number else ""
    return json.dumps(f"{{{{ env_var('{name}'{fallback}){cast} }}}}")


def _dbt_value(value: Value, *, number: bool = False) -> str:
    if value.env is not None:
        return _env_var(value.env, number=number)
    assert value.literal is not None
    return _scalar(value.literal)


def _lines(pairs: list[tuple[str, str]], indent: int) -> list[str]:
    return [f"{' ' * indent}{key}: {text}" for key, text in pairs]


def profiles_yml(spec: ProfilesSpec) -> str:
    """The dbt profiles.yml text: one profile, one target, no secret value."""
    assert spec.dbt is not None
    dbt = spec.dbt
    c = spec.connection(dbt.connection)
    pairs: list[tuple[str, str]] = [("type", dbt.type)]
    if dbt.type == "postgres":
        pairs += [
            ("host", _dbt_value(c.host)),
            ("port", _dbt_value(c.port, number=True)),
            ("dbname", _dbt_value(c.database)),
            ("user", _dbt_value(_required(c.user))),
            ("password", _dbt_value(c.password) if c.password else _env_var(c.token_env)),
            ("schema", _scalar(dbt.schema)),
            ("threads", str(dbt.threads)),
        ]
        if c.sslmode:
            pairs.append(("sslmode", _scalar(c.sslmode)))
    else:
        assert dbt.driver is not None
        pairs += [("driver", _scalar(dbt.driver)), ("server", _dbt_value(c.host))]
        if dbt.type == "sqlserver":
            pairs.append(("port", _dbt_value(c.port, number=True)))
        pairs += [("database", _dbt_value(c.database)), ("schema", _scalar(dbt.schema))]
        if c.auth == "entra":
            pairs += [
                ("authentication", "ActiveDirectoryAccessToken"),
                ("access_token", _env_var(c.token_env)),
            ]
            if dbt.type == "sqlserver":
                # dbt-sqlserver wants the expiry (epoch seconds); 0, when dbt is run by hand without
                # it, means "assume 75 minutes" (with a warning).
                expires = _env_var(f"{c.token_env}_EXPIRES_ON", number=True, default="0")
                pairs.append(("access_token_expires_on", expires))
        else:
            pairs += [
                ("authentication", "sql"),
                ("user", _dbt_value(_required(c.user))),
                ("password", _dbt_value(_required(c.password))),
            ]
        pairs.append(("threads", str(dbt.threads)))
    head = [
        "# Written by azpytest prepare (mode 0600). No secret is in this file: dbt reads each",
        "# Key Vault value (and an Entra access token) from the variable named in env_var().",
        f"{_scalar(dbt.profile)}:",
        f"  target: {_scalar(dbt.target)}",
        "  outputs:",
        f"    {_scalar(dbt.target)}:",
    ]
    return "\n".join([*head, *_lines(pairs, 6)]) + "\n"


def connections_yaml(spec: ProfilesSpec) -> str:
    """The connections file the fixtures read (`load_connections`): no secret value."""
    lines = [
        "# Written by azpytest prepare (mode 0600): the connections the azpytest fixtures open.",
        "# No secret is in this file: {env: NAME} names the variable holding the Key Vault value.",
        "version: 1",
        "connections:",
    ]
    for c in spec.connections:
        pairs: list[tuple[str, str]] = [("kind", c.kind)]
        for field, value in c.values():
            if field == "password":
                continue
            pairs.append((field, _file_value(value)))
        pairs.append(("auth", c.auth))
        if c.password is not None:
            pairs.append(("password", _file_value(c.password)))
        if c.scope is not None:
            pairs.append(("scope", _scalar(c.scope)))
        if c.sslmode is not None:
            pairs.append(("sslmode", _scalar(c.sslmode)))
        lines += [f"  {_scalar(c.name)}:", *_lines(pairs, 4)]
    if spec.dbt is not None:
        dbt = spec.dbt
        pairs = [
            ("profile", _scalar(dbt.profile)),
            ("target", _scalar(dbt.target)),
            ("connection", _scalar(dbt.connection)),
            ("type", dbt.type),
        ]
        lines += ["dbt:", *_lines(pairs, 2)]
    return "\n".join(lines) + "\n"


def _file_value(value: Value) -> str:
    if value.env is not None:
        return f"{{env: {value.env}, secret: {value.secret}}}"
    assert value.literal is not None
    return _scalar(value.literal)


def write(spec: ProfilesSpec, run_dir: RunDir) -> dict[str, str]:
    """Write connections.yaml (and profiles.yml with a dbt section), 0600; return the
    variables `prepare` exports."""
    exported = {}
    if spec.dbt is not None:
        run_dir.write_private(PROFILES_FILE, profiles_yml(spec))
        exported["DBT_PROFILES_DIR"] = str(run_dir.path)
    path = run_dir.write_private(CONNECTIONS_FILE, connections_yaml(spec))
    exported["AZPYTEST_CONNECTIONS"] = str(path)
    return exported


# ---------------------------------------------------------------------------- use time


class ConnectionsError(ValueError):
    """connections.yaml cannot be used here; the message names the connection and the fix."""


@dataclass(frozen=True)
class Connection:
    """One prepared connection, its Key Vault fields read from the environment. The password
    stays in its variable until `password()` asks for it (never in a repr)."""

    name: str
    kind: str
    host: str
    port: int
    database: str
    user: str | None
    auth: str
    password_env: str | None
    sslmode: str | None = None
    scope: str | None = None  # entra: the scope of the token that is the password

    @property
    def token_env(self) -> str:
        """The variable `run_dbt` fills with an entra connection's token for dbt."""
        return variable(self.name, "token")

    def password(self, environ: Mapping[str, str] | None = None) -> str:
        if self.password_env is None:
            raise ConnectionsError(errors.entra_password(self.name, self.scope))
        return _lookup(self.name, "password", self.password_env, None, environ)


def _lookup(
    connection: str, field: str, env: str, secret: str | None, environ: Mapping[str, str] | None
) -> str:
    value = (os.environ if environ is None else environ).get(env)
    if value is None:
        raise ConnectionsError(errors.connection_variable_unset(connection, field, env, secret))
    return value


def _read(path: Path) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = load_yaml("connections", text, "not valid YAML")
    except InputError:
        raise ConnectionsError(errors.connections_not_yaml(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("connections"), dict):
        raise ConnectionsError(errors.connections_no_mapping(path))
    return data


def load_connections(
    path: Path, environ: Mapping[str, str] | None = None, cloud: Cloud = PUBLIC
) -> dict[str, Connection]:
    """The connections of a connections.yaml, `{env: NAME}` fields read from the environment
    now (an unset variable is a ConnectionsError naming it and the connection); an entra
    connection without a scope gets `cloud`'s for its kind."""
    data = _read(path)
    return {
        str(name): _load(str(name), fields, environ, cloud)
        for name, fields in data["connections"].items()
    }


def dbt_token(path: Path) -> tuple[str, str] | None:
    """`(variable, scope)` of the Entra token the dbt target written next to this
    connections.yaml reads, or None when it logs in with a password (or there is no target)."""
    data = _read(path)
    dbt = data.get("dbt")
    if not isinstance(dbt, dict):
        return None
    name = str(dbt.get("connection"))
    fields = data["connections"].get(name)
    if not isinstance(fields, dict) or fields.get("auth") != "entra":
        return None
    kind = str(fields.get("kind"))
    scope = fields.get("scope") or PUBLIC.token_scope(kind)
    return variable(name, "token"), str(scope)


def variable_sources(path: Path) -> dict[str, tuple[str, str, str | None]]:
    """`variable -> (connection, field, Key Vault secret)` for each `{env: NAME}` field of a
    connections.yaml, and each entra connection's token variable (no secret)."""
    found: dict[str, tuple[str, str, str | None]] = {}
    for name, fields in _read(path)["connections"].items():
        if not isinstance(fields, dict):
            continue
        for field, raw in fields.items():
            if isinstance(raw, dict) and raw.get("env"):
                secret = raw.get("secret")
                found[str(raw["env"])] = (str(name), str(field), str(secret) if secret else None)
        if fields.get("auth") == "entra":
            found[variable(str(name), "token")] = (str(name), "token", None)
    return found


def _load(
    name: str, fields: Any, environ: Mapping[str, str] | None, cloud: Cloud = PUBLIC
) -> Connection:
    if not isinstance(fields, dict) or fields.get("kind") not in KINDS:
        raise ConnectionsError(errors.connection_no_kind(name, KINDS))
    kind = str(fields["kind"])

    def get(field: str) -> str | None:
        raw = fields.get(field)
        if isinstance(raw, dict):
            return _lookup(name, field, str(raw.get("env")), raw.get("secret"), environ)
        return None if raw is None else str(raw)

    port_text = get("port") or str(DEFAULT_PORT[kind])
    if not port_text.strip().isdigit():
        raise ConnectionsError(errors.connection_port_not_number(name, port_text))
    host, database = get("host"), get("database")
    if not host or not database:
        raise ConnectionsError(errors.connection_needs_host(name))
    password = fields.get("password")
    auth = str(fields.get("auth", "password"))
    return Connection(
        name=name,
        kind=kind,
        host=host,
        port=int(port_text),
        database=database,
        user=get("user"),
        auth=auth,
        password_env=str(password["env"]) if isinstance(password, dict) else None,
        sslmode=get("sslmode"),
        scope=(get("scope") or cloud.token_scope(kind)) if auth == "entra" else None,
    )


def azure_sql_token_struct(token: str) -> bytes:
    """The ODBC SQL_COPT_SS_ACCESS_TOKEN (1256) value: the token's UTF-16-LE bytes after
    their length as a 4-byte little-endian integer (pass as `attrs_before={1256: ...}`)."""
    data = token.encode("utf-16-le")
    return struct.pack("<I", len(data)) + data

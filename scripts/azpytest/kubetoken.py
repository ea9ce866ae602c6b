"""The fast path of `azpytest kube-token` and of the kubelogin stand-in: a token for kubectl
without importing an Azure SDK.

kubectl runs the exec plugin once per invocation, so a suite that shells out to kubectl a
hundred times starts it a hundred times. Each start answers, in this order:

1. from the job's token broker, when the command runs under `azpytest run` / `exec` (the
   broker names itself in `BROKER_VARIABLE`, beside `IDENTITY_ENDPOINT`): one loopback GET;
2. from the token cache, a 0600 file in the run folder (recorded, so `cleanup` deletes it),
   shared by every invocation with the same inputs until shortly before the token expires;
3. else from the full command (`kube.token_main`), which takes the cache's lock, asks Entra
   ID once, and fills the cache for the others (concurrent kubectl calls wait on the lock
   rather than each asking Entra).

Anything unusual (a flag the fast path does not know, a broker that refuses, a cache that is
missing, stale or unreadable) falls through to the full command, which validates and
diagnoses as it always did. This module imports only the standard library and the run
folder's module: importing it costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from azpytest.rundir import RunDir

EXEC_V1 = "client.authentication.k8s.io/v1"
EXEC_V1BETA1 = "client.authentication.k8s.io/v1beta1"
EXEC_API_VERSIONS = (EXEC_V1, EXEC_V1BETA1)

# The broker's endpoint, set by `broker.child_env` beside IDENTITY_ENDPOINT: an
# IDENTITY_ENDPOINT that is not the job's broker (App Service's own) is never asked.
BROKER_VARIABLE = "AZPYTEST_BROKER_ENDPOINT"  # not AZPYTEST_BROKER: the broker input
# The App Service managed-identity protocol the broker speaks.
BROKER_API_VERSION = "2019-08-01"
BROKER_HEADER = "X-IDENTITY-HEADER"
# Bounds of the loopback request: the broker bounds its own calls to Entra by the timeout
# input (default 40 s, http.DEFAULT_DEADLINE_S); past this the full command takes over.
BROKER_CONNECT_S = 2.0
BROKER_READ_S = 45.0

# maskchannel.ENV_VARIABLE (a unit test keeps them equal): `run`'s channel to the job log.
MASK_CHANNEL_VARIABLE = "AZPYTEST_MASK_SOCKET"

CACHE_PREFIX = "kube-token-"  # + a digest of the inputs + ".json", in the run folder
# Renew a cached token when less than this is left, or 10 % of its life if that is more, but
# never later than half its life (the broker's rule).
RENEW_MIN_S = 60.0
RENEW_FRACTION = 0.1

# The inputs kube-token reads, and their variables (inputs.INPUTS; a unit test keeps the two
# in step). They make the cache key: invocations that would resolve to another identity or
# server never share a token.
TOKEN_INPUTS: dict[str, tuple[str, ...]] = {
    "tenant-id": ("AZPYTEST_TENANT_ID", "AZURE_TENANT_ID"),
    "client-id": ("AZPYTEST_CLIENT_ID", "AZURE_CLIENT_ID"),
    "cloud": ("AZPYTEST_CLOUD",),
    "audience": ("AZPYTEST_AUDIENCE",),
    "env-file": ("AZPYTEST_ENV_FILE",),
}
# Flags only the full command handles (validation, debug output, another deadline).
_SLOW_FLAGS = ("--debug", "--timeout", "--help", "-h")


# ---------------------------------------------------------------------------- ExecCredential


def exec_api_version(exec_info: str | None, default: str = EXEC_V1) -> str:
    """The ExecCredential apiVersion kubectl asks for in KUBERNETES_EXEC_INFO."""
    if not exec_info:
        return default
    try:
        data = json.loads(exec_info)
    except ValueError:
        raise ValueError("KUBERNETES_EXEC_INFO is not JSON") from None
    version = data.get("apiVersion") if isinstance(data, dict) else None
    if not version:
        return default
    if version not in EXEC_API_VERSIONS:
        raise ValueError(
            f"KUBERNETES_EXEC_INFO asks for {version}; kube-token answers "
            f"{' or '.join(EXEC_API_VERSIONS)}"
        )
    return str(version)


def exec_credential(api_version: str, token: str, expires_on: int) -> dict[str, Any]:
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_on))
    return {
        "kind": "ExecCredential",
        "apiVersion": api_version,
        "spec": {"interactive": False},
        "status": {"token": token, "expirationTimestamp": expiry},
    }


def print_credential(api_version: str, token: str, expires_on: int) -> None:
    """Stdout is kubectl's: the ExecCredential and nothing else."""
    sys.stdout.write(json.dumps(exec_credential(api_version, token, expires_on)) + "\n")
    sys.stdout.flush()


def seen(token: str) -> None:
    """A token this process hands out is masked as the full command masks it: under `run`
    through its mask channel, which writes the `::add-mask::` lines to the job log. Without
    the channel a mask here reaches nothing (under kubectl no workflow command may be written:
    stdout is kubectl's), so the masking modules are not even imported then."""
    if not os.environ.get(MASK_CHANNEL_VARIABLE):
        return
    from azpytest.github import Workflow

    Workflow({**os.environ, "GITHUB_ACTIONS": ""}, out=sys.stderr).mask(token)


# ---------------------------------------------------------------------------- the cache


class Held:
    """A token, when it expires (epoch seconds) and when to renew it. (Not a dataclass:
    `dataclasses` imports `inspect`, a sixth of the fast path's import time.)"""

    __slots__ = ("expires_on", "fetched_at", "renew_at", "token")

    def __init__(self, token: str, expires_on: int, fetched_at: float) -> None:
        self.token = token
        self.expires_on = int(expires_on)
        self.fetched_at = fetched_at
        life = max(0.0, expires_on - fetched_at)
        margin = min(max(RENEW_MIN_S, life * RENEW_FRACTION), life / 2)
        self.renew_at = expires_on - margin

    def good(self, now: float) -> bool:
        return now < self.renew_at and now < self.expires_on


def hold(token: str, expires_on: int, started: float) -> Held:
    """A token fetched at `started` (epoch seconds), with the time to renew it."""
    return Held(token, expires_on, started)


def cache_key(server_id: str, flags: Mapping[str, str | None], environ: Mapping[str, str]) -> str:
    """Names the cache file: the server app and every input (flag or variable) that decides
    the identity. Identifiers only, never a secret. When the tenant or the client is given by
    neither, a `.env` may name them: then the working directory (whose `.env` it is) too."""
    parts: dict[str, Any] = {"server-id": server_id}
    for name, variables in TOKEN_INPUTS.items():
        parts[name] = [flags.get(name), *(environ.get(v) for v in variables)]
    if not all(any(parts[name]) for name in ("tenant-id", "client-id")):
        parts["cwd"] = os.getcwd()
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest[:32]


def cache_run_dir(environ: Mapping[str, str]) -> RunDir | None:
    """The run folder the cache lives in: the one the environment names, if azpytest made it
    (never a folder made here at random)."""
    run_dir = RunDir.from_environment(environ)
    return run_dir if run_dir is not None and run_dir.is_ours else None


def _cache_name(key: str) -> str:
    return f"{CACHE_PREFIX}{key}.json"


def _parse(data: bytes) -> Held | None:
    """The token a cache file holds, or None for anything else (empty, half-written, not
    ours): the caller then fetches a new one and rewrites the file."""
    try:
        fields = json.loads(data)
        held = Held(str(fields["token"]), int(fields["expires_on"]), float(fields["fetched_at"]))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    return held if held.token else None


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_cached(run_dir: RunDir, key: str, now: float) -> Held | None:
    """The cached token if it is still good; waits while another process renews it."""
    try:
        fd = os.open(run_dir / _cache_name(key), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        held = _parse(_read_all(fd))
    except OSError:
        return None
    finally:
        os.close(fd)
    return held if held is not None and held.good(now) else None


class Cache:
    """The cache file, held under an exclusive lock (see `locked`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, now: float) -> Held | None:
        held = _parse(_read_all(self._fd))
        return held if held is not None and held.good(now) else None

    def write(self, held: Held) -> None:
        data = json.dumps(
            {"token": held.token, "expires_on": held.expires_on, "fetched_at": held.fetched_at}
        ).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


@contextlib.contextmanager
def locked(run_dir: RunDir, key: str) -> Iterator[Cache | None]:
    """The cache file (created 0600 and recorded for cleanup), locked against every other
    invocation for the block: one of them asks Entra, the others then read its token. None
    when the file cannot be opened (a run folder made read-only or removed): no cache then."""
    try:
        fd = run_dir.open_private(_cache_name(key))
    except OSError:
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Cache(fd)
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------------- the broker


def from_broker(
    environ: Mapping[str, str], server_id: str, client_id: str | None
) -> tuple[str, int] | None:
    """The token from the job's broker, or None (no broker, or any answer but a token)."""
    endpoint = environ.get("IDENTITY_ENDPOINT")
    header = environ.get("IDENTITY_HEADER")
    if not endpoint or not header or environ.get(BROKER_VARIABLE) != endpoint:
        return None
    import urllib.parse

    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        return None
    if any(c in header for c in "\r\n"):
        return None
    query = {"api-version": BROKER_API_VERSION, "resource": server_id}
    if client_id:
        query["client_id"] = client_id
    request = (
        f"GET {url.path or '/'}?{urllib.parse.urlencode(query)} HTTP/1.1\r\n"
        f"Host: {url.hostname}:{url.port}\r\n{BROKER_HEADER}: {header}\r\n"
        "Metadata: true\r\nConnection: close\r\n\r\n"
    )
    try:
        answer = _loopback_get(url.hostname, url.port, request.encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or status_line[1] != b"200":
            return None
        data = json.loads(body)
        return str(data["access_token"]), int(data["expires_on"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _loopback_get(host: str, port: int, request: bytes) -> bytes:
    """One request on a plain socket, the answer read until the broker closes the connection
    (`http.client` imports `ssl` and `email`: 45 ms of the plugin's start here)."""
    import socket

    limit = 1 << 20
    with socket.create_connection((host, port), timeout=BROKER_CONNECT_S) as connection:
        connection.settimeout(BROKER_READ_S)
        connection.sendall(request)
        chunks: list[bytes] = []
        size = 0
        while chunk := connection.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError("the broker's answer is over 1 MiB")
    return b"".join(chunks)


# ---------------------------------------------------------------------------- entry points


def _flags(args: Sequence[str], known: Sequence[str]) -> dict[str, str] | None:
    """`--name value` / `--name=value` pairs of the known flags; None for anything else."""
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            return None
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args):
            name, value = arg[2:], args[i + 1]
            i += 2
        else:
            return None
        if name not in known or name in values:
            return None
        values[name] = value
    return values


def answer(
    server_id: str, flags: Mapping[str, str | None], api_version: str, environ: Mapping[str, str]
) -> bool:
    """Print the ExecCredential from the broker or a good cached token; False to go the full
    way."""
    got = from_broker(environ, server_id, flags.get("client-id"))
    if got is None:
        run_dir = cache_run_dir(environ)
        held = (
            read_cached(run_dir, cache_key(server_id, flags, environ), time.time())
            if (run_dir is not None)
            else None
        )
        if held is None:
            return False
        got = held.token, held.expires_on
        # A cached token may have been fetched under kubectl, where nothing could mask it.
        seen(held.token)
    # (The broker masked its token in the job log when Entra ID issued it.)
    token, expires_on = got
    print_credential(api_version, token, expires_on)
    return True


def kube_token(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """`azpytest kube-token ARGS` answered here (True), or left to the full command."""
    if any(arg in _SLOW_FLAGS or arg.startswith(_SLOW_FLAGS) for arg in argv):
        return False
    values = _flags(argv, ("server-id", *TOKEN_INPUTS))
    if not values or not values.get("server-id"):
        return False
    try:
        api_version = exec_api_version(environ.get("KUBERNETES_EXEC_INFO"))
    except ValueError:
        return False
    server_id = values.pop("server-id")
    flags = {name: values.get(name) for name in TOKEN_INPUTS}
    return answer(server_id, flags, api_version, environ)


def kubelogin_flags(
    tenant_id: str | None, environment: str | None, environ: Mapping[str, str]
) -> dict[str, str | None]:
    """The kube-token inputs a `kubelogin get-token` command line amounts to. kubelogin's
    --client-id names the az CLI's public app in ARM's kubeconfigs: not ours."""
    cloud = _KUBELOGIN_CLOUDS.get((environment or "").replace(" ", "").lower())
    flags: dict[str, str | None] = dict.fromkeys(TOKEN_INPUTS)
    flags["cloud"] = cloud
    if not (environ.get("AZPYTEST_TENANT_ID") or environ.get("AZURE_TENANT_ID")):
        flags["tenant-id"] = tenant_id
    return flags


# kubelogin's --environment names -> our cloud names.
_KUBELOGIN_CLOUDS = {
    "azurepubliccloud": "AzureCloud",
    "azurecloud": "AzureCloud",
    "azureusgovernmentcloud": "AzureUSGovernment",
    "azureusgovernment": "AzureUSGovernment",
    "azurechinacloud": "AzureChinaCloud",
}
# kubelogin get-token flags with a value (the full command accepts and ignores the others).
_KUBELOGIN_VALUES = {
    "--server-id": "server-id",
    "--tenant-id": "tenant-id",
    "-t": "tenant-id",
    "--environment": "environment",
    "-e": "environment",
    "--client-id": "client-id",
    "--login": "login",
    "-l": "login",
}


def kubelogin(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """`kubelogin get-token ARGS` (the stand-in) answered here (True), or left to the full
    command."""
    if not argv or argv[0] != "get-token":
        return False
    values: dict[str, str] = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, inline = arg.partition("=")
        key = _KUBELOGIN_VALUES.get(name)
        if key is None:
            return False  # --legacy, flags it ignores, ...: the full parser decides
        if inline or "=" in arg:
            values[key] = inline
            i += 1
        elif i + 1 < len(args):
            values[key] = args[i + 1]
            i += 2
        else:
            return False
    server_id = values.get("server-id")
    if not server_id:
        return False
    try:
        api_version = exec_api_version(environ.get("KUBERNETES_EXEC_INFO"), EXEC_V1BETA1)
    except ValueError:
        return False
    flags = kubelogin_flags(values.get("tenant-id"), values.get("environment"), environ)
    return answer(server_id, flags, api_version, environ)

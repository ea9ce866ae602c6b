"""The job-local token broker: Azure's managed-identity endpoint on loopback, for the test
step's own Azure code.

Every Azure SDK's `DefaultAzureCredential` / `ManagedIdentityCredential` (and `az login
--identity`) speaks the App Service protocol when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`
are set:

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R[&client_id=C]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}
    -> {"access_token", "expires_on": "<epoch>", "resource", "token_type": "Bearer", "client_id"}

The broker answers with tokens of the job's own credential (`identity.build`: in Actions a
fresh GitHub assertion for every Entra request, on a laptop DefaultAzureCredential), so that
code gets tokens that keep working for a run of any length. One token per resource, cached,
renewed before it expires; concurrent requests for a resource share one Entra request.

It is a thread of the `azpytest run` / `azpytest exec` process, not a process of its own: the
listening socket belongs to the process that started the command, so it cannot outlive it
(a SIGKILL included), and the header never travels anywhere but the command's environment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import importlib
import io
import json
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

from azure.core.credentials import AccessTokenInfo, TokenRequestOptions

from azpytest import errors
from azpytest.github import Workflow
from azpytest.kubetoken import BROKER_VARIABLE
from azpytest.settings import Settings

API_VERSION = "2019-08-01"
PATH = "/msi/token"
HEADER = "X-IDENTITY-HEADER"

# Renew a token when less than this is left, or 10 % of its life if that is more (but never
# later than half its life: a 5-second token is renewed after 2.5 s).
RENEW_MIN_S = 60.0
RENEW_FRACTION = 0.1
# Clients are told a token expires this much before it does (at most half the renewal margin),
# so one that caches what it is given never sends a token that expired on the way.
REPORT_MARGIN_S = 60.0
# After a failed renewal the old token is served (while still good) and renewal retried
# no sooner than this.
RETRY_S = 5.0
# A transient upstream failure (Entra's 429, 5xx, AADSTS90033, a reset, a timeout) is
# answered 503 with this Retry-After, which managed-identity clients (azure-core's retry
# policy) honour; a refusal stays 400 with Entra's error.
TRANSIENT_RETRY_AFTER_S = 1

# Variables that make DefaultAzureCredential (or the SDKs of other languages) pick another
# credential before the managed identity, or another managed-identity protocol.
SHADOWING = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)
_PROXIES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class TokenSource(Protocol):
    """What the broker needs of an `identity.Identity`."""

    principal: dict[str, str]

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Held:
    """A cached token and the times that govern it (epoch seconds)."""

    token: str
    expires_on: float  # the real expiry: the earlier of what Entra said and the JWT's exp
    renew_at: float  # a request after this fetches a new token
    reported: int  # the expires_on clients are told


def hold(token: str, expires_on: float, fetched_at: float) -> Held:
    life = expires_on - fetched_at
    if life <= 0:  # expired on arrival (a clock far off): hand it on, never cache it
        return Held(token, expires_on, renew_at=fetched_at, reported=int(expires_on))
    renew = min(max(RENEW_MIN_S, life * RENEW_FRACTION), life / 2)
    report = min(REPORT_MARGIN_S, renew / 2)
    return Held(token, expires_on, renew_at=expires_on - renew, reported=int(expires_on - report))


class Refused(Exception):
    """A request the broker answers with an error: status and the message the SDK shows."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


@dataclass(frozen=True)
class _Failure:
    at: float
    refused: Refused


class Broker:
    """The endpoint. `source` makes a new credential for each token it fetches (see _fetch)."""

    def __init__(
        self,
        source: Callable[[], TokenSource],
        *,
        client_id: str | None,
        audit_path: Path | None = None,
        workflow: Workflow | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.client_id = client_id.lower() if client_id else None
        self.audit_path = audit_path
        self.workflow = workflow
        self.header = secrets.token_urlsafe(32)
        if workflow is not None:
            workflow.mask(self.header)  # before the value exists anywhere else
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._held: dict[str, Held] = {}
        self._failed: dict[str, _Failure] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._audit_lock = threading.Lock()
        self._principal: dict[str, str] = {}
        self._warned: set[str] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Broker:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="azpytest-broker",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # nothing listens from here on
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the broker is not running"
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    # ------------------------------------------------------------------ tokens

    def token(self, resource: str) -> tuple[Held, str]:
        """The token for `resource` and where it came from: cached, fresh, or stale (a failed
        renewal: the old token, still good for the client). Raises Refused."""
        arrived = self._clock()
        held = self._held.get(resource)
        if held is not None and arrived < held.renew_at:
            return held, "cached"
        with self._lock(resource):
            now = self._clock()
            held = self._held.get(resource)
            if held is not None and now < held.renew_at:
                return held, "cached"  # renewed by the request this one waited for
            failed = self._failed.get(resource)
            if failed is not None and failed.at >= arrived:
                # The request this one waited for failed just now: the same answer, not
                # another Entra request.
                refused = failed.refused
                raise Refused(refused.status, refused.message, refused.outcome)
            try:
                fresh = self._fetch(resource, now)
            except Refused as exc:
                later = self._clock()
                self._failed[resource] = _Failure(later, exc)
                if held is not None and later < held.reported:
                    retry = min(later + RETRY_S, (later + held.reported) / 2)
                    self._held[resource] = replace(held, renew_at=retry)
                    return held, "stale"
                raise
            self._held[resource] = fresh
            self._failed.pop(resource, None)
            return fresh, "fresh"

    def _lock(self, resource: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(resource, threading.Lock())

    def _fetch(self, resource: str, started: float) -> Held:
        # A new credential for each fetch: the credential's own cache would hand back the
        # token being renewed (azure-identity refreshes only in the last 300 s, and not
        # twice within 30 s), and the broker's cache is the only one that knows our margins.
        scope = f"{resource}/.default"
        try:
            source = self.source()
            try:
                info = source.get_token_info(scope)
                self._principal.update(source.principal)
            finally:
                source.close()
        except errors.Diagnosis as diagnosis:
            self._warn(resource, diagnosis)
            message = errors.broker_no_token(resource, diagnosis)
            if diagnosis.transient:
                raise Refused(503, message, "unavailable") from None
            raise Refused(400, message, "refused") from None
        except Exception as exc:  # the network, or a credential's own error: say which
            message = errors.broker_token_failed(resource, exc)
            network = isinstance(exc, OSError) or type(exc).__name__.startswith("Service")
            raise Refused(503 if network else 500, message, "failed") from None
        from azpytest.identity import unverified_claims

        expires = float(info.expires_on)
        exp = unverified_claims(info.token).get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            expires = min(expires, float(exp))
        return hold(info.token, expires, started)

    def _warn(self, resource: str, diagnosis: errors.Diagnosis) -> None:
        """Once per failure: the job log says what the SDK's exception says, with the fix."""
        if self.workflow is None or diagnosis.what in self._warned:
            return
        self._warned.add(diagnosis.what)
        message, title = errors.broker_refusal_warning(resource, diagnosis)
        self.workflow.warning(message, title=title)

    # ------------------------------------------------------------------ the protocol

    def answer(self, target: str, header: str | None) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for `GET target` with X-IDENTITY-HEADER `header` (a 503 goes
        out with Retry-After: TRANSIENT_RETRY_AFTER_S)."""
        started = time.perf_counter()
        url = urllib.parse.urlsplit(target)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        resource = query.get("resource", "")
        asked = query.get("client_id")
        try:
            if url.path.rstrip("/").lower() != PATH:
                raise Refused(404, errors.broker_no_endpoint(url.path, PATH), "bad-request")
            self._check(header, query)
            held, outcome = self.token(resource)
        except Refused as refused:
            self._audit(resource, asked, refused.status, refused.outcome, started)
            return refused.status, {
                "statusCode": refused.status,
                "message": refused.message,
                "correlationId": str(uuid.uuid4()),
            }
        self._audit(resource, asked, 200, outcome, started, held.reported)
        return 200, {
            "access_token": held.token,
            "expires_on": str(held.reported),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": self.client_id or self._principal.get("appid", ""),
        }

    def _check(self, header: str | None, query: Mapping[str, str]) -> None:
        if header is None or not hmac.compare_digest(header.encode(), self.header.encode()):
            raise Refused(401, errors.broker_bad_header(HEADER, sent=bool(header)), "unauthorized")
        version = query.get("api-version")
        if version != API_VERSION:
            raise Refused(400, errors.broker_bad_api_version(version, API_VERSION), "bad-request")
        if not query.get("resource"):
            raise Refused(400, errors.BROKER_NO_RESOURCE, "bad-request")
        other = [name for name in ("object_id", "principal_id", "mi_res_id") if query.get(name)]
        asked = query.get("client_id")
        if other or (asked and asked.lower() != self.client_id):
            chose = f"{other[0]}={query[other[0]]}" if other else f"client_id={asked}"
            raise Refused(400, errors.broker_other_identity(self.client_id, chose), "bad-request")

    def _audit(
        self,
        resource: str,
        client_id: str | None,
        status: int,
        outcome: str,
        started: float,
        expires_on: int | None = None,
    ) -> None:
        with self._audit_lock:
            self.counts[outcome] += 1
        if self.audit_path is None:
            return
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "source": "broker",
            "resource": resource,
            "client_id": client_id,
            "status": status,
            "outcome": outcome,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if expires_on is not None:
            entry["expires_on"] = expires_on
        line = json.dumps(entry) + "\n"
        with self._audit_lock, self.audit_path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def summary(self) -> str:
        served = self.counts["cached"] + self.counts["fresh"] + self.counts["stale"]
        refused = sum(self.counts.values()) - served
        return (
            f"azpytest: token broker: {sum(self.counts.values())} request(s), {served} served "
            f"({self.counts['fresh']} fetched from Entra ID, {self.counts['cached']} from its "
            f"cache), {refused} refused"
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: SDK clients reuse their connection
    timeout = 120  # an idle kept-alive connection is closed after this
    # Headers and body leave in separate writes; with Nagle's algorithm and the client's
    # delayed ACK each answer would stall about 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        broker = cast(_Server, self.server).broker
        status, body = broker.answer(self.path, self.headers.get(HEADER))
        transient = {"Retry-After": str(TRANSIENT_RETRY_AFTER_S)} if status == 503 else None
        self._send(status, body, transient)

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body we do not read must not be taken for a request
        self._send(405, {"statusCode": 405, "message": errors.broker_use_get(PATH)})

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def _send(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are in the audit record; nothing goes to stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections too: after stop() nothing answers."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------- wiring


class _OwnLine(io.TextIOBase):
    """Stdout for workflow commands written while the command shares our stdout: each starts
    on a line of its own, or the runner would print `::add-mask::<token>` as text."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        self._out.write("\n" + text if text.startswith("::") else text)
        return len(text)

    def flush(self) -> None:
        self._out.flush()


def for_settings(settings: Settings, workflow: Workflow) -> Broker:
    """A broker with the job's credential; the header is masked at once."""
    from azpytest import identity

    run_dir = settings.rundir.create()
    own = Workflow(workflow.environ, out=cast(TextIO, _OwnLine(workflow.out)))
    broker = Broker(
        lambda: identity.build(settings, own),
        client_id=settings.client_id,
        audit_path=run_dir.audit,
        workflow=own,  # masks the header before anything else can print it
    )
    # The first token would otherwise wait for azure.identity's import (~0.4 s).
    threading.Thread(target=importlib.import_module, args=("azure.identity",), daemon=True).start()
    return broker


@contextlib.contextmanager
def serving(settings: Settings, workflow: Workflow, what: str) -> Iterator[Broker]:
    """The broker for the lifetime of the block; its summary printed at the end."""
    broker = for_settings(settings, workflow)
    with broker:
        print(
            f"azpytest: token broker for {what} on {broker.endpoint} (IDENTITY_ENDPOINT): "
            f"Entra ID tokens of {settings.client_id or 'your local login'} for "
            "DefaultAzureCredential / ManagedIdentityCredential; set broker: false to turn it off",
            flush=True,
        )
        yield broker
    print(broker.summary(), flush=True)


def child_env(
    base: Mapping[str, str], broker: Broker, settings: Settings, workflow: Workflow
) -> dict[str, str]:
    """The command's environment: the broker's endpoint, the identity, and no variable that
    would make its DefaultAzureCredential use something else first."""
    env = dict(base)
    removed = [name for name in SHADOWING if name in env]
    for name in removed:
        del env[name]
    if removed:
        workflow.notice(errors.broker_removed_variables(removed), title=errors.BROKER_TITLE)
    env.update(broker.env())
    # kube-token's fast path asks this broker only (not another IDENTITY_ENDPOINT).
    env[BROKER_VARIABLE] = broker.endpoint
    for name, value in (
        ("AZURE_TENANT_ID", settings.tenant_id),
        ("AZURE_CLIENT_ID", settings.client_id),
        ("AZURE_SUBSCRIPTION_ID", settings.subscription_id),
    ):
        if value:
            env[name] = value
    if any(env.get(name) for name in _PROXIES):
        # Loopback must not go to an http:// proxy.
        for name in ("NO_PROXY", "no_proxy"):
            hosts = [h for h in env.get(name, "").split(",") if h.strip()]
            if "127.0.0.1" not in hosts:
                env[name] = ",".join([*hosts, "127.0.0.1"])
    return env

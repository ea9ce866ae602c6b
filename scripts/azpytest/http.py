"""HTTP sessions for the Azure SDKs and GitHub: connection pools sized for our threads, one
TLS context per CA bundle, and the one timeout policy every call to a service follows.

With `REQUESTS_CA_BUNDLE` set (corporate proxies, self-hosted runners), requests loads the
bundle again for every new connection: about 50 ms of CPU each for a system bundle, which
made twenty parallel Key Vault reads CPU-bound. We load it once and share the context.
"""

from __future__ import annotations

import functools
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


@functools.lru_cache(maxsize=4)
def _context(bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=bundle)


class _SharedContextAdapter(HTTPAdapter):
    def __init__(self, bundle: str | None, timeouts: Timeouts | None = None, **kwargs: Any):
        self._bundle = bundle
        self._context = _context(bundle) if bundle else None
        self._timeouts = timeouts
        super().__init__(**kwargs)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None and self._timeouts is not None:
            # A request sent without a timeout still gets the policy's (requests waits
            # forever otherwise).
            kwargs["timeout"] = (self._timeouts.connect, self._timeouts.read)
        return super().send(request, *args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self._context is not None:
            proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if self._context is not None and verify == self._bundle:
            # The shared context already trusts this bundle: do not load it again.
            conn.ca_certs = None
            conn.ca_cert_dir = None


def session(
    environ: Mapping[str, str] | None = None,
    *,
    pool_size: int = 10,
    retry: Retry | None = None,
    timeouts: Timeouts | None = None,
) -> requests.Session:
    env = os.environ if environ is None else environ
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None
    if bundle and not os.path.isfile(bundle):
        bundle = None  # requests reports the missing file itself, naming it
    adapter = _SharedContextAdapter(
        bundle,
        timeouts or Timeouts(),
        pool_connections=4,
        pool_maxsize=pool_size,
        max_retries=retry or 0,
    )
    result = requests.Session()
    result.mount("https://", adapter)
    return result


def transport(environ: Mapping[str, str] | None, timeouts: Timeouts, *, pool_size: int = 10) -> Any:
    """An azure-core transport with the policy's bounds. They must be given here: a client
    given `transport=` ignores its own connection_timeout/read_timeout (300 s applies)."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(
        session=session(environ, pool_size=pool_size, timeouts=timeouts),
        session_owner=True,
        connection_timeout=timeouts.connect,
        read_timeout=timeouts.read,
    )


# ---------------------------------------------------------------------------- the timeout policy

# Every call to a remote service (GitHub OIDC, Entra ID, Key Vault, ARM, the AKS API server)
# is bounded three ways: the TCP/TLS connection (CONNECT_S), each wait for bytes of the
# answer (READ_S), and the whole operation with its retries (the deadline, the `timeout`
# input, DEFAULT_DEADLINE_S). Per-request bounds never exceed a third of the deadline, so a
# hung service is asked twice before the operation gives up, and after a timeout no try
# starts that could outlast the deadline.
CONNECT_S = 10.0
READ_S = 20.0
DEFAULT_DEADLINE_S = 40
# Backoff between tries: BACKOFF_S * 2**(try - 1), at most BACKOFF_MAX_S, with full jitter;
# a Retry-After the service sent is honoured (up to what is left of the deadline).
BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0


@dataclass(frozen=True)
class Timeouts:
    """The bounds of one operation (see CONNECT_S, READ_S, DEFAULT_DEADLINE_S)."""

    deadline: float = DEFAULT_DEADLINE_S

    @property
    def connect(self) -> float:
        return min(CONNECT_S, self.deadline / 3)

    @property
    def read(self) -> float:
        return min(READ_S, self.deadline / 3)

    def describe(self) -> str:
        return (
            f"connect {self.connect:.3g} s, read {self.read:.3g} s, deadline {self.deadline:.3g} s "
            "(the timeout input)"
        )


class Transient(Exception):
    """An answer worth asking again: 429, a 5xx, a reset, a timeout, a malformed 200.
    `said` is what the service did, for the diagnosis; `bound` the timeout it hit, if any."""

    def __init__(self, said: str, *, retry_after: float | None = None, bound: str | None = None):
        super().__init__(said)
        self.said = said
        self.retry_after = retry_after
        self.bound = bound


class GaveUp(Exception):
    """Transient answers until the deadline: the last one, how many tries, in what time."""

    def __init__(self, last: Transient, tries: int, elapsed: float, timeouts: Timeouts):
        self.last = last
        self.tries = tries
        self.elapsed = elapsed
        self.timeouts = timeouts
        super().__init__(self.summary())

    def summary(self) -> str:
        bound = f" ({self.last.bound})" if self.last.bound else ""
        return (
            f"{self.last.said}{bound}; gave up after {self.tries} tr"
            f"{'y' if self.tries == 1 else 'ies'} in {self.elapsed:.1f} s (deadline "
            f"{self.timeouts.deadline:.3g} s)"
        )


T = TypeVar("T")


def retrying(
    attempt: Callable[[tuple[float, float]], T],
    timeouts: Timeouts,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt((connect, read))` until it returns or raises something other than
    Transient; GaveUp when the deadline would pass before the next try."""
    started = clock()
    end = started + timeouts.deadline
    tries = 0
    while True:
        tries += 1
        left = max(end - clock(), 0.1)
        try:
            return attempt((min(timeouts.connect, left), min(timeouts.read, left)))
        except Transient as exc:
            last = exc
        wait = random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (tries - 1)))
        if last.retry_after is not None:
            wait = max(wait, last.retry_after)
        now = clock()
        # After a timeout, the next try may hang as long: start it only if it would end in time.
        need = timeouts.read if last.bound else 0.05
        if now + wait + need > end:
            raise GaveUp(last, tries, now - started, timeouts) from None
        sleep(wait)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; a date counts as absent)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def network_transient(exc: requests.RequestException, timeouts: Timeouts) -> Transient | None:
    """A failed request worth retrying (a timeout, a reset); None for one that is not (no
    such host, the proxy refused the tunnel, a certificate that does not verify)."""
    if isinstance(exc, requests.ConnectTimeout):
        return Transient("no connection", bound=f"the connect timeout of {timeouts.connect:.3g} s")
    if isinstance(exc, requests.ReadTimeout):
        return Transient("no answer", bound=f"the read timeout of {timeouts.read:.3g} s")
    if isinstance(exc, requests.exceptions.SSLError) or proxy_refused(exc):
        return None
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text:
            return None
        return Transient(f"the connection failed ({reason(exc)})")
    return None


def proxy_refused(exc: BaseException) -> bool:
    """The proxy would not open the tunnel (no such host, a 502 or 403 to CONNECT), or
    cannot be reached: a configuration problem, not worth asking again. (urllib3 also
    calls a connection dropped inside the tunnel a ProxyError: that one is transient.)"""
    text = str(exc)
    return any(
        sign in text
        for sign in ("Tunnel connection failed", "Name or service not known", "Connection refused")
    )


def reason(exc: BaseException) -> str:
    text = str(exc)
    for word in ("reset", "aborted", "closed", "RemoteDisconnected", "IncompleteRead"):
        if word in text:
            return {
                "reset": "reset by the peer",
                "aborted": "aborted",
                "RemoteDisconnected": "closed without an answer",
                "closed": "closed without an answer",
                "IncompleteRead": "the answer was cut short",
            }[word]
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__

"""The HTTPS plumbing every stand-in shares: requests, answers, faults and the request log."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any, Protocol

from .scenario import Fault

# Query parameters that could carry a credential never reach the request log.
_SENSITIVE_PARAMS = {"client_secret", "client_assertion", "assertion", "code", "token", "sig"}


@dataclass
class Request:
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    who: str = "anonymous"

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8", "replace")))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload).encode()
        return cls(
            status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        )

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), {"Content-Type": f"{content_type}; charset=utf-8"})


class Service(Protocol):
    name: str

    def serves(self, host: str) -> bool: ...

    def handle(self, request: Request) -> Response: ...

    def fault_response(self, status: int) -> Response: ...


@dataclass
class LoggedRequest:
    time: float
    service: str
    method: str
    host: str
    path: str
    status: int
    who: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": round(self.time, 3),
            "service": self.service,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "status": self.status,
            "who": self.who,
        }


class RequestLog:
    """Every request the sandbox answered; never a token or a secret value."""

    def __init__(self, sink: IO[str] | None = None) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._sink = sink

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            if self._sink is not None:
                self._sink.write(json.dumps(entry.as_dict()) + "\n")
                self._sink.flush()

    def __iter__(self) -> Iterator[LoggedRequest]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def select(
        self, service: str | None = None, method: str | None = None, path_prefix: str = ""
    ) -> list[LoggedRequest]:
        return [
            e
            for e in self
            if (service is None or e.service == service)
            and (method is None or e.method == method)
            and e.path.startswith(path_prefix)
        ]


def safe_path(path: str, query: dict[str, str]) -> str:
    if not query:
        return path
    shown = {k: ("***" if k.lower() in _SENSITIVE_PARAMS else v) for k, v in query.items()}
    return f"{path}?{urllib.parse.urlencode(shown)}"


class FaultBook:
    """The fault rules in force, consumed atomically (a 'times: 2' rule fires twice)."""

    def __init__(self, faults: list[Fault], latency_ms: int = 0) -> None:
        self.faults = faults
        self.latency_ms = latency_ms
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def pick(self, service: str, method: str, host: str, path: str) -> tuple[int, Fault | None]:
        """The delay in ms for this request, and the fault that answers it (if any)."""
        delay = self.latency_ms
        chosen = None
        now = time.monotonic()
        with self._lock:
            for fault in self.faults:
                if not fault.matches(service, method, host, path):
                    continue
                delay += fault.latency_ms
                if chosen is None and fault.answers and fault.in_force(now):
                    fault.hits += 1
                    if fault.first_hit is None:
                        fault.first_hit = now
                    chosen = fault
        return delay, chosen


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded HTTPS server whose TLS handshake runs in the connection's own thread."""

    daemon_threads = True
    request_queue_size = 128  # many clients connect at once (a pool of 32 threads, say)
    allow_reuse_address = True

    def __init__(
        self,
        context: ssl.SSLContext,
        route: Callable[[str], Service | None],
        log: RequestLog,
        faults: FaultBook,
        stopping: threading.Event,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.route = route
        self.log = log
        self.faults = faults
        self.stopping = stopping

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is normal (timeouts, faults); say nothing.
        pass

    def serve_in_thread(self, name: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm and the client's
    # delayed ACK each answer would stall about 40 ms.
    disable_nagle_algorithm = True
    server: SandboxHTTPServer
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        started = time.time()
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower().strip("[]")
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, host, parsed.path, query, self.headers, body)
        service = self.server.route(host)
        service_name = service.name if service else "-"
        delay_ms, fault = self.server.faults.pick(service_name, self.command, host, parsed.path)
        if delay_ms and self.server.stopping.wait(delay_ms / 1000):
            self.close_connection = True
            return
        if service is None:
            response = Response.text(404, f"the sandbox serves no host {host!r}\n")
        elif fault is not None and fault.hang_s:
            self.server.stopping.wait(fault.hang_s)
            self.close_connection = True
            self.server.log.add(
                LoggedRequest(
                    started,
                    service_name,
                    self.command,
                    host,
                    safe_path(parsed.path, query),
                    0,
                    "hang",
                )
            )
            return
        elif fault is not None and fault.reset:
            self.server.log.add(
                LoggedRequest(
                    started,
                    service_name,
                    self.command,
                    host,
                    safe_path(parsed.path, query),
                    0,
                    "reset",
                )
            )
            self.close_connection = True
            with contextlib.suppress(OSError):
                # Linger 0: close() sends a TCP reset instead of a clean end.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            return
        elif fault is not None and fault.truncated:
            response = Response(
                200, b'{"value": "eyJhbGciOiJSUzI1NiJ9.eyJ', {"Content-Type": "application/json"}
            )
        elif fault is not None and fault.malformed:
            response = Response(
                200,
                b"<html><body>502 Bad Gateway</body></html>",
                {"Content-Type": "application/json"},
            )
        elif fault is not None and fault.status is not None:
            response = service.fault_response(fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
        else:
            try:
                response = service.handle(request)
            except Exception as exc:  # a bug in a stand-in must show, not hang the client
                response = Response.json(
                    500,
                    {"error": {"code": "SandboxBug", "message": f"{type(exc).__name__}: {exc}"}},
                )
        self.server.log.add(
            LoggedRequest(
                started,
                service_name,
                self.command,
                host,
                safe_path(parsed.path, query),
                response.status,
                request.who,
            )
        )
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

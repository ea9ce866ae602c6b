"""A CONNECT proxy: the hosts the sandbox serves go to its TLS server, the rest pass through.

Clients reach it through `HTTPS_PROXY`, so the product talks to the real hostnames and
never learns it is sandboxed. Hosts it does not serve are tunnelled unchanged (pip and uv
keep working under it); a host that cannot be reached gets 502, as from a real proxy.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable


class ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connect at once (a pool of 32 threads, say)
    allow_reuse_address = True

    def __init__(
        self, served: Callable[[str], bool], front_port: int, stopping: threading.Event
    ) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.served = served
        self.front_port = front_port
        self.stopping = stopping

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        pass

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-proxy",
            daemon=True,
        )
        thread.start()
        return thread


class _TunnelHandler(socketserver.BaseRequestHandler):
    server: ConnectProxy
    request: socket.socket

    def handle(self) -> None:
        client = self.request
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 65536:
                return
            head += chunk
        header, _, early = head.partition(b"\r\n\r\n")
        request_line = header.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.split(" ", 1)[0]
        if method.upper() != "CONNECT":
            client.sendall(
                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        host, _, port_text = target.rpartition(":")
        host = host.strip("[]").lower()
        try:
            port = int(port_text)
        except ValueError:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            if self.server.served(host):
                upstream = socket.create_connection(("127.0.0.1", self.server.front_port), 5)
            else:
                upstream = socket.create_connection((host, port), 10)
        except OSError:
            client.sendall(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                upstream.sendall(early)
            _pipe(client, upstream, self.server.stopping)


def _pipe(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    for sock in (a, b):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        idle = 0.0
        while not stopping.is_set() and idle < 300:
            events = sel.select(timeout=0.5)
            if not events:
                idle += 0.5
                continue
            idle = 0.0
            for key, _ in events:
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                if not data:
                    return
                dst.setblocking(True)
                try:
                    dst.sendall(data)
                except OSError:
                    return
                finally:
                    with contextlib.suppress(OSError):
                        dst.setblocking(False)

"""A threaded TCP server on loopback that keeps its open connections: the stand-ins that speak
a protocol of their own (LDAP for PostgreSQL's logins, TDS for Azure SQL) drop every one of
them when they stop, so a stopped service looks dead at once instead of holding a login until
the client's own timeout."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading


class LoopbackServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64  # a pool of connections logging in at once

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def drop_connections(self) -> None:
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that vanishes mid-answer is normal; nothing to report

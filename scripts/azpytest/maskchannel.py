"""The mask channel: how the test process tells `azpytest run` a value to mask.

pytest captures what a test process writes to its stdout (fd capture swallows even
`sys.__stdout__`), so an `::add-mask::` written there never reaches the runner, or reaches
it late, mid-line, or after the value itself. So `azpytest run` listens on a Unix socket in
a private (0700) folder and names it in the test process's environment (`ENV_VARIABLE`,
which xdist's workers and every process a test starts inherit). A process with a value to
mask (`Workflow.mask`) sends it there and waits for the answer; `run` writes the
`::add-mask::` lines on its own stdout, at the start of a line and before anything the test
process writes later, and only then answers.

One request a connection: a JSON line `{"value": ..., "encoded": bool}`, answered `ok`.
Every value masked in this process (sent or not) is also handed to the callbacks given to
`on_mask`: the plugin's scrubber, and `run`'s record of tokens for the report step.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

ENV_VARIABLE = "AZPYTEST_MASK_SOCKET"
SOCKET_NAME = "masks"
# `run` answers as soon as it has written the lines; this bounds a wedged `run`.
TIMEOUT_SECONDS = 10.0
_ANSWER = b"ok\n"
_MAX_REQUEST = 1 << 20  # a mask is a token or a secret, far below a MiB
_ACCEPT_POLL_SECONDS = 0.5

Listener = Callable[[str], object]
_listeners: list[Listener] = []
_values: list[str] = []  # every value masked in this process, for listeners that come later
_guard = threading.Lock()


def on_mask(listener: Listener) -> None:
    """Call `listener(value)` with every value masked in this process, so far and from now."""
    with _guard:
        if listener in _listeners:
            return
        _listeners.append(listener)
        earlier = list(_values)
    for value in earlier:
        listener(value)


def masked(value: str) -> None:
    """Tell the listeners (`Workflow.mask` calls this for every value it masks)."""
    with _guard:
        if value in _values:
            return
        _values.append(value)
        listeners = list(_listeners)
    for listener in listeners:
        listener(value)


def send(path: str, value: str, *, encoded: bool = False) -> bool:
    """Ask the `run` listening at `path` to mask `value`; whether it did (it has written the
    `::add-mask::` lines when this returns True)."""
    request = json.dumps({"value": value, "encoded": encoded}).encode("utf-8") + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_SECONDS)
            sock.connect(path)
            sock.sendall(request)
            return _read_line(sock) == _ANSWER
    except OSError:
        return False


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) <= _MAX_REQUEST:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def serving(mask: Callable[[str, bool], object]) -> Iterator[str]:
    """Listen for masks for the lifetime of the block, calling `mask(value, encoded)` for
    each before answering; yields the socket's path (for ENV_VARIABLE). Only this user can
    reach it (its folder is 0700); the folder is removed at the end."""
    import shutil  # here: kubectl's exec plugin imports this module at every start
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="azpytest-masks-"))  # 0700, a short path
    path = folder / SOCKET_NAME
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen(64)
        server.settimeout(_ACCEPT_POLL_SECONDS)  # where shutdown does not wake accept (macOS)
        stop = threading.Event()
        thread = threading.Thread(target=_accept, args=(server, mask, stop), daemon=True)
        thread.start()
        try:
            yield str(path)
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
            thread.join(TIMEOUT_SECONDS)
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def _accept(
    server: socket.socket, mask: Callable[[str, bool], object], stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=_answer, args=(conn, mask), daemon=True).start()


def _answer(conn: socket.socket, mask: Callable[[str, bool], object]) -> None:
    with conn:
        conn.settimeout(TIMEOUT_SECONDS)
        try:
            request = json.loads(_read_line(conn))
            value, encoded = request["value"], bool(request.get("encoded"))
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not isinstance(value, str):
            return
        mask(value, encoded)
        with contextlib.suppress(OSError):
            conn.sendall(_ANSWER)

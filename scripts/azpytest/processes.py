"""Process groups: a command in a session of its own, signalled and ended as a whole.

pytest does not make a process group of its own, and a SIGKILLed parent leaves its children
running: so the commands azpytest runs (pytest, `exec`'s command) start a new session, and
everything they start — pytest-xdist's workers, what a test starts — shares its process
group, which one signal reaches at once and which can be ended as a whole, even by another
process later (`cleanup`, from the run folder's record).

A group is known by its id (its leader's pid) and its leader's start time: a pid that the
system has given to another process since is never signalled.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO

# After the first SIGINT or SIGTERM, the whole group (xdist's workers included) gets this
# long for its teardown, then SIGKILL. GitHub cancels a step with SIGINT, then SIGTERM 7.5 s
# later, then SIGKILL 2.5 s after that: 5 s leaves `run` time to report before the SIGTERM.
GRACE_SECONDS = 5.0
# What outlives a command that ended by itself (a child a test started): SIGTERM, this long
# to go, then SIGKILL. `cleanup` ends a recorded group so too.
LEFTOVER_GRACE_SECONDS = 2.0
_KILL_WAIT_SECONDS = 2.0  # for the kernel to take what SIGKILL ended
_POLL_SECONDS = 0.05
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Group:
    """A process group: its id and its leader's start time (clock ticks since boot on Linux,
    seconds since the epoch elsewhere; comparable with `started` on the same machine)."""

    pgid: int
    started: int

    @classmethod
    def led_by(cls, pid: int) -> Group:
        return cls(pid, started(pid) or 0)


@dataclass(frozen=True)
class Outcome:
    """How a command run by `run_group` ended."""

    code: int  # its exit status; 128 + N when signal N ended it
    received: int | None  # the first SIGINT/SIGTERM we got while it ran
    killed: bool  # the grace period after a signal ran out and the group was SIGKILLed
    leftovers: int  # processes of its group ended after it exited


@dataclass(frozen=True)
class _Process:
    pid: int
    pgid: int
    started: int
    zombie: bool


def _from_proc() -> Iterator[_Process]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp session ... starttime (field 22); comm may hold ") ".
        fields = stat[stat.rfind(")") + 2 :].split()
        yield _Process(int(entry.name), int(fields[2]), int(fields[19]), fields[0] == "Z")


def _from_ps() -> Iterator[_Process]:
    """Where there is no /proc (macOS): ps, its start times to the second."""
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=,pgid=,stat=,lstart="],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        check=False,
    ).stdout
    for line in listing.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        try:
            begun = calendar.timegm(time.strptime(parts[3].strip(), "%a %b %d %H:%M:%S %Y"))
        except ValueError:
            continue
        yield _Process(int(parts[0]), int(parts[1]), begun, parts[2].startswith("Z"))


def _processes() -> Iterator[_Process]:
    return _from_proc() if Path("/proc/self/stat").is_file() else _from_ps()


def started(pid: int) -> int | None:
    """When process `pid` started, or None when there is no such process."""
    return next((p.started for p in _processes() if p.pid == pid), None)


def members(group: Group) -> list[int]:
    """The live processes of `group`; none when its id now leads another process's group
    (the leader's start time differs: the system gave the pid to someone else), and none
    for an id that names no group of its own (0, 1, ours)."""
    if group.pgid <= 1 or group.pgid == os.getpgrp():
        return []
    found = [p for p in _processes() if p.pgid == group.pgid or p.pid == group.pgid]
    leader = next((p for p in found if p.pid == group.pgid), None)
    if leader is not None and leader.started != group.started:
        return []
    return [
        p.pid for p in found if p.pgid == group.pgid and not p.zombie and p.started >= group.started
    ]


def _signal(pgid: int, signum: int) -> None:
    if pgid <= 1 or pgid == os.getpgrp():  # killpg(0) is our own group
        return
    # Gone already (or, after all, not ours to signal): nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _gone_within(group: Group, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while members(group):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def end(group: Group, grace: float = LEFTOVER_GRACE_SECONDS) -> int:
    """SIGTERM to what lives of `group`, `grace` seconds to go, then SIGKILL; how many
    processes it had. A group that is not ours (see `members`) is left alone."""
    alive = len(members(group))
    if alive:
        _signal(group.pgid, signal.SIGTERM)
        if not _gone_within(group, grace):
            _signal(group.pgid, signal.SIGKILL)
            _gone_within(group, _KILL_WAIT_SECONDS)
    return alive


def _drain(group: Group, deadline: float) -> int:
    """What lives of `group` has had its stop signal: until `deadline` (monotonic) to go,
    then SIGKILL; how many processes had to be killed."""
    if _gone_within(group, max(0.0, deadline - time.monotonic())):
        return 0
    left = len(members(group))
    _signal(group.pgid, signal.SIGKILL)
    _gone_within(group, _KILL_WAIT_SECONDS)
    return left


def run_group(
    command: list[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    *,
    interrupt: int | None = None,
    on_start: Callable[[Group], object] | None = None,
    relay: LineRelay | None = None,
) -> Outcome:
    """Run `command` in a new session, its output straight to ours (live); with `relay`, its
    stdout and stderr through a pipe that `relay` copies to ours as it comes.

    SIGINT and SIGTERM go to its whole group: the first as `interrupt` when given (pytest
    stops gracefully, teardown and JUnit, only on SIGINT), any later one as it came.
    GRACE_SECONDS after the first, what is left of the group (the command, or what outlives
    it: xdist's workers in their teardown) is SIGKILLed. Without a signal, what outlives the
    command is ended when it exits (`end`). `on_start` gets the group as soon as it exists.
    """
    forwarder = _Forwarder(interrupt)
    previous = {sig: signal.signal(sig, forwarder.handle) for sig in _FORWARDED}
    try:
        child = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            start_new_session=True,
            stdout=subprocess.PIPE if relay is not None else None,
            stderr=subprocess.STDOUT if relay is not None else None,
        )
    except BaseException:
        _restore(previous)
        raise
    group = Group.led_by(child.pid)
    copier = None
    if relay is not None and child.stdout is not None:
        copier = threading.Thread(target=relay.copy, args=(child.stdout,), daemon=True)
        copier.start()
    try:
        forwarder.attach(group)
        if on_start is not None:
            on_start(group)
        status = child.wait()
    finally:
        forwarder.stop()
        if child.poll() is None:  # an error of ours while it ran: it must not outlive us
            _signal(group.pgid, signal.SIGKILL)
            child.wait()
        if forwarder.deadline is None:
            leftovers = end(group)
        else:  # what is left had the stop signal too: the rest of the grace period, then SIGKILL
            leftovers = _drain(group, forwarder.deadline)
            if leftovers:
                forwarder.killed.set()
        forwarder.stop()  # a signal may have come while the leftovers were ended
        _restore(previous)
        if copier is not None:
            # Its group is gone, so the pipe's other end is closed: what is left in it is
            # read at once (a process that left the group and holds it is not waited for).
            copier.join(_KILL_WAIT_SECONDS)
    return Outcome(
        code=status if status >= 0 else 128 - status,
        received=forwarder.received[0] if forwarder.received else None,
        killed=forwarder.killed.is_set(),
        leftovers=leftovers,
    )


class LineRelay:
    """A command's output copied to ours as it comes, and our own lines put between its lines.

    The runner acts on a workflow command (`::add-mask::`) only at the start of a line, and
    hides a value only in what it reads after that line: `line` writes a command of ours on
    a line of its own (ending the command's unfinished line first, if any), in order with
    the command's output, so what the command prints after `line` returns comes after it.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._at_line_start = True

    def copy(self, source: BinaryIO) -> None:
        """Copy `source` to our output until its end (in a thread of its own)."""
        fd = source.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.write(chunk)
        source.close()

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._out.write(data)
            self._out.flush()
            self._at_line_start = data.endswith(b"\n")

    def line(self, text: str) -> None:
        """`text` (one or more whole lines) at the start of a line, flushed."""
        data = text.encode("utf-8")
        if not data.endswith(b"\n"):
            data += b"\n"
        with self._lock:
            if not self._at_line_start:
                data = b"\n" + data
            self._out.write(data)
            self._out.flush()
            self._at_line_start = True


class _Forwarder:
    """The SIGINT/SIGTERM handler of `run_group`: passes signals on to the group and
    SIGKILLs it GRACE_SECONDS after the first (a signal that comes before the group exists
    is passed on when it does)."""

    def __init__(self, interrupt: int | None) -> None:
        self.interrupt = interrupt
        self.received: list[int] = []
        self.killed = threading.Event()
        self.deadline: float | None = None  # of the grace period (time.monotonic)
        self._group: Group | None = None
        self._timer: threading.Timer | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._group is not None:
            self._pass_on(self._group, signum, first=len(self.received) == 1)

    def attach(self, group: Group) -> None:
        self._group = group
        if self.received and self._timer is None:
            self._pass_on(group, self.received[0], first=True)

    def _pass_on(self, group: Group, signum: int, *, first: bool) -> None:
        _signal(group.pgid, self.interrupt if first and self.interrupt is not None else signum)
        if first and self._timer is None:
            self.deadline = time.monotonic() + GRACE_SECONDS
            self._timer = threading.Timer(GRACE_SECONDS, self._kill, (group,))
            self._timer.daemon = True
            self._timer.start()

    def _kill(self, group: Group) -> None:
        self.killed.set()
        _signal(group.pgid, signal.SIGKILL)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


_Handler = Callable[[int, FrameType | None], object] | int | None


def _restore(previous: Mapping[signal.Signals, _Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)

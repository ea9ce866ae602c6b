"""The run folder: every path in it, its private writes, and the record cleanup deletes from.

One folder per job, shard and attempt (`$RUNNER_TEMP/azpytest/<run>`), made 0700 with a
marker that says azpytest made it. Files that hold or lead to credentials are written only
through `write_private` / `private_folder`, which create them 0600 / 0700 and append their
name to the folder's record *before* writing, so that `cleanup` deletes exactly what was
made, whichever step or process made it. While a command runs (pytest, `exec`'s command),
a record of its process group is here too, so that `cleanup` can end what a killed step
left running. Nothing else in the package names a file here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

MARKER = ".azpytest-run"
RECORD = ".azpytest-credentials"  # one relative name a line, appended as they are made
GROUP_PREFIX = ".azpytest-group-"  # + pgid: a running command's process group, as JSON
PREPARED = "prepared.json"
AUDIT = "audit.jsonl"
LOCAL_ENV = "prepared.env"
KUBECONFIG = "kubeconfig"
PROFILES = "profiles.yml"
CONNECTIONS = "connections.yaml"
JUNIT = "junit.xml"
ARTIFACTS = "artifacts"
BIN = "bin"  # the kubelogin stand-in and the az shim, first on the tests' PATH
AZ_CONFIG = "az"  # the az CLI's private config folder (it holds tokens)
TOKENS = "tokens.json"  # the tokens `run` masked, for the report step's scrubber
ENV_VARIABLE = "AZPYTEST_RUN_DIR"  # how later steps and the test process find the folder
_MARKER_TEXT = "This folder was made by azpytest; `azpytest cleanup` deletes its credentials.\n"


def fresh(path: Path) -> Path:
    """`path`, else `path.2`, `path.3`, ...: the first that does not exist, made here (0700)
    so that two processes never take the same one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate, number = path, 1
    while True:
        try:
            candidate.mkdir(mode=0o700)
            return candidate
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.name}.{number}")


def point_latest(link: Path, target: Path) -> None:
    """Make `link` (a symlink beside `target`) point at it, atomically."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.name if target.parent == link.parent else target)
    os.replace(temporary, link)


def forget_latest(link: Path, target: Path) -> None:
    """Remove `link` if it points at `target` (a folder cleanup has emptied)."""
    if link.is_symlink() and link.resolve() == target.resolve():
        link.unlink(missing_ok=True)


class GroupRecord(NamedTuple):
    """A process group a step started, recorded while it runs: its id, its leader's start
    time (to tell a reused id apart) and what it runs."""

    pgid: int
    started: int
    command: str


class RunDir:
    """One run folder. Constructing it touches nothing; `create` makes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RunDir | None:
        value = environ.get(ENV_VARIABLE)
        return cls(Path(value)) if value else None

    # ------------------------------------------------------------------ paths

    @property
    def prepared(self) -> Path:
        return self.path / PREPARED

    @property
    def audit(self) -> Path:
        return self.path / AUDIT

    @property
    def local_env(self) -> Path:
        return self.path / LOCAL_ENV

    @property
    def kubeconfig(self) -> Path:
        return self.path / KUBECONFIG

    @property
    def profiles(self) -> Path:
        return self.path / PROFILES

    @property
    def connections(self) -> Path:
        return self.path / CONNECTIONS

    @property
    def tokens(self) -> Path:
        return self.path / TOKENS

    @property
    def junit(self) -> Path:
        return self.path / JUNIT

    def durations(self, shard_index: int) -> Path:
        """This shard's durations (pytest-split reads and updates one file)."""
        return self.path / f"durations-{shard_index}.json"

    # ------------------------------------------------------------------ making it

    @property
    def is_ours(self) -> bool:
        return (self.path / MARKER).is_file()

    def create(self) -> RunDir:
        """Make the folder (0700) and its marker; idempotent."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker = self.path / MARKER
        if not marker.is_file():
            marker.write_text(_MARKER_TEXT, encoding="utf-8")
        return self

    def _remember(self, name: str) -> None:
        """Add `name` to the record before the file exists: a crash between the two leaves a
        name cleanup skips, never a file it does not know."""
        if name in self.recorded():
            return
        fd = os.open(self.path / RECORD, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")

    def write_private(self, name: str, text: str) -> Path:
        """Write a credential file only its owner can read, created 0600 (never briefly
        wider), and record it for cleanup."""
        self.create()
        self._remember(name)
        path = self.path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        return path

    def open_private(self, name: str) -> int:
        """A descriptor (read-write) of a credential file only its owner can read, created
        0600 if missing (never truncated; made 0600 if it was wider), and recorded for
        cleanup."""
        self.create()
        self._remember(name)
        fd = os.open(self.path / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def private_folder(self, name: str) -> Path:
        """A 0700 folder for credentials (az's config, a private PATH entry), recorded."""
        self.create()
        self._remember(name)
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def forget(self, name: str) -> None:
        """Delete a recorded folder or file now (it stays in the record; cleanup skips it)."""
        import shutil  # here: kube-token's fast path imports this module

        path = self.path / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def recorded(self) -> list[str]:
        """The names of every credential file and folder made in this folder."""
        try:
            text = (self.path / RECORD).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return []
        return list(dict.fromkeys(line for line in text.splitlines() if line))

    def delete_credentials(self) -> list[str]:
        """Delete what the record lists (inside this folder only); the names removed."""
        import shutil

        removed: list[str] = []
        root = self.path.resolve()
        for name in self.recorded():
            path = self.path / name
            # The record is a file on disk: never follow it out of the folder.
            if root not in path.resolve().parents:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(f"{name}/")
            elif path.exists() or path.is_symlink():
                path.unlink()
                removed.append(name)
        return removed  # the record stays (names only): what was made, for the audit

    # ------------------------------------------------------------------ running groups

    def record_group(self, record: GroupRecord) -> Path:
        """Record a process group that is starting (a file of its own: steps may nest)."""
        self.create()
        path = self.path / f"{GROUP_PREFIX}{record.pgid}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record._asdict()) + "\n")
        return path

    def forget_group(self, pgid: int) -> None:
        (self.path / f"{GROUP_PREFIX}{pgid}").unlink(missing_ok=True)

    def recorded_groups(self) -> list[GroupRecord]:
        """The process groups recorded and not forgotten: left by a step that was killed."""
        records = []
        for path in sorted(self.path.glob(f"{GROUP_PREFIX}*")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                record = GroupRecord(int(data["pgid"]), int(data["started"]), str(data["command"]))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # not one we wrote: nothing to signal on its word
            if record.pgid > 1 and path.name == f"{GROUP_PREFIX}{record.pgid}":
                records.append(record)
        return records

    # ------------------------------------------------------------------ prepared.json

    def write_prepared(self, record: Mapping[str, Any]) -> Path:
        """What prepare did, names only (never a value); read by the later steps."""
        self.create()
        path = self.prepared
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=2) + "\n")
        return path

    def read_prepared(self) -> dict[str, Any]:
        """prepared.json, or {} when prepare has not run here (or left nothing readable)."""
        try:
            data = json.loads(self.prepared.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def masked_variables(self) -> list[str]:
        """The variables whose values every output must scrub (prepare's `masked_env`)."""
        names = self.read_prepared().get("masked_env")
        return [str(n) for n in names] if isinstance(names, list) else []

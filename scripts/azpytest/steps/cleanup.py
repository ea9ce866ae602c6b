"""`azpytest cleanup`: leave no credential behind, whatever the outcome.

Deletes what the run folder's record lists — every file and folder that holds or leads to a
credential, recorded by `rundir` as it was made (kubeconfig, profiles, the local export
file, az's config, the kubelogin stand-in) — and keeps what the report and the upload need
(the JUnit file, failure artifacts, the audit log, durations, prepared.json with its names
and no values). Runs as the action's last step with `if: always()`: it reads no input but
the run folder, so a bad unrelated input never stops it; deleting what is gone is no error.
A folder azpytest did not make (no marker) is refused, never emptied.

First, though, it ends the process groups the folder records as running: a `run` or `exec`
that was SIGKILLed leaves pytest, its workers and what the tests started running, and they
would write here again after the deletion. A recorded group whose leader's start time is not
the recorded one is another's (its id was reused) and is left alone.
"""

from __future__ import annotations

from pathlib import Path

from azpytest import processes
from azpytest.rundir import MARKER, RunDir, forget_latest
from azpytest.settings import InputError


def run(run_dir: RunDir, latest: Path | None = None) -> int:
    """Clean `run_dir`; on a laptop, the `latest` link stops pointing at it (a later run
    makes a folder of its own)."""
    if not run_dir.path.exists():
        print(f"azpytest: cleanup: {run_dir.path} does not exist; nothing to remove", flush=True)
        return 0
    if not run_dir.is_ours:
        raise InputError(
            "run-dir",
            f"{run_dir.path} has no {MARKER} marker: azpytest did not make it, so cleanup "
            "removes nothing there (pass the run-dir that prepare printed)",
        )
    for record in run_dir.recorded_groups():
        ended = processes.end(processes.Group(record.pgid, record.started))
        if ended:
            print(_ended_left_running(record.command, record.pgid, ended), flush=True)
        run_dir.forget_group(record.pgid)
    removed = run_dir.delete_credentials()
    if latest is not None:
        forget_latest(latest, run_dir.path)
    left = sorted(p.name for p in run_dir.path.iterdir() if not p.name.startswith(".azpytest"))
    print(
        f"azpytest: cleanup of {run_dir.path}: removed {', '.join(removed) or 'nothing'}; "
        f"kept {', '.join(left) or 'nothing'}",
        flush=True,
    )
    return 0


def _ended_left_running(command: str, pgid: int, count: int) -> str:
    return (
        f"azpytest: cleanup: ended {count} process(es) of {command}'s process group {pgid}, "
        "left running by a step that was killed (SIGTERM, "
        f"{processes.LEFTOVER_GRACE_SECONDS:g} s, then SIGKILL)"
    )


def credential_files(run_dir: RunDir) -> list[str]:
    """What cleanup would remove: the recorded names that still exist."""
    return [name for name in run_dir.recorded() if (run_dir / name).exists()]

"""`azpytest cleanup`: leave no credential behind, whatever the outcome.

Deletes the files of the run folder that hold or lead to credentials (kubeconfig, profiles,
the local export file) and keeps what the report and the upload need (the JUnit file,
failure artifacts, the audit log, durations, prepared.json with its names and no values).
Runs as the action's last step with `if: always()`; deleting what is gone is no error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from azpytest.github import Workflow
from azpytest.settings import Settings

CREDENTIAL_FILES = ("kubeconfig", "profiles.yml", "connections.yaml", "prepared.env")
CREDENTIAL_DIRS = ("bin", "az")  # a private PATH entry and az's config folder, if made


def run(settings: Settings, workflow: Workflow) -> int:
    run_dir = settings.run_dir
    removed: list[str] = []
    for name in CREDENTIAL_FILES:
        path = run_dir / name
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append(name)
    for name in CREDENTIAL_DIRS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(f"{name}/")
    left = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    print(
        f"azpytest: cleanup of {run_dir}: removed {', '.join(removed) or 'nothing'}; "
        f"kept {', '.join(left) or 'nothing'}",
        flush=True,
    )
    return 0


def credential_files(run_dir: Path) -> list[Path]:
    """What cleanup would remove (for tests and the e2e checks)."""
    return [run_dir / n for n in (*CREDENTIAL_FILES, *CREDENTIAL_DIRS) if (run_dir / n).exists()]

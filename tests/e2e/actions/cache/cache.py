"""The stand-in actions/cache (restore and save): entries are tar files named by their key in
the folder AZPYTEST_E2E_CACHE names, holding the paths as absolute paths (as the real cache
restores them where they were). Without that folder every restore misses and saves keep
nothing, as on a runner whose cache service is unavailable (a warning, never a failure)."""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from pathlib import Path


def entry(key: str) -> Path | None:
    store = os.environ.get("AZPYTEST_E2E_CACHE")
    if not store:
        return None
    return Path(store) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".tar")


def paths() -> list[Path]:
    return [Path(line.strip()) for line in os.environ["INPUT_PATH"].splitlines() if line.strip()]


def output(name: str, value: str) -> None:
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"{name}={value}\n")


def restore() -> int:
    key = os.environ["INPUT_KEY"]
    found = entry(key)
    output("cache-primary-key", key)
    if found is None or not found.is_file():
        print(f"Cache not found for input keys: {key}")
        output("cache-hit", "false")
        return 0
    with tarfile.open(found) as archive:
        archive.extractall("/", filter="tar")
    print(f"Cache restored from key: {key}")
    output("cache-hit", "true")
    output("cache-matched-key", key)
    return 0


def save() -> int:
    key = os.environ["INPUT_KEY"]
    target = entry(key)
    if target is None:
        print("::warning::Cache service is not available: nothing saved")
        return 0
    if target.exists():
        print(
            f"::warning::Failed to save: Unable to reserve cache with key {key}, another job "
            "may be creating this cache."
        )
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        for path in paths():
            if path.exists():
                archive.add(path, arcname=str(path.resolve()).lstrip("/"))
    partial.rename(target)
    print(f"Cache saved with key: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(restore() if sys.argv[1:] == ["restore"] else save())

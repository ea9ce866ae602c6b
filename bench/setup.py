"""The action's setup step (scripts/setup.sh) from cold, with uv's caches warm, and from a
restored environment; then the first azpytest command in a fresh environment against a warm
one (issue 17, parts 1 and 6). Runs are interleaved; min / median of RUNS each.

- cold: an empty tool cache and an empty uv cache (a hosted runner's first job without the
  Actions cache): uv from its locked wheel (`pip download`, no venv), every wheel fetched
  from the package index.
- uv warm: uv in the tool cache and uv's cache warm (a self-hosted runner, a new key).
- restored: the environment untarred where the Actions cache restores it (a hosted runner's
  cache hit; the tar stands in for the cache's download), then setup.
- first command: `python -m azpytest --version` plus the imports `prepare` makes, in the
  environment just built (bytecode compiled at install) vs the same command again.

    .venv/bin/python bench/setup.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
RUNS = 3
FIRST_COMMAND = (
    "import azpytest.__main__, azpytest.steps.prepare, azpytest.identity, azpytest.keyvault, "
    "azure.identity, azure.keyvault.secrets, azpytest.kube"
)


def setup(temp: Path, tools: Path, uv_cache: Path) -> tuple[float, Path]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZPYTEST_", "GITHUB_", "RUNNER_", "VIRTUAL_ENV"))
    }
    out = temp / "output"
    out.unlink(missing_ok=True)
    env.update(
        {
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(temp),
            "RUNNER_TOOL_CACHE": str(tools),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_OUTPUT": str(out),
            "UV_CACHE_DIR": str(uv_cache),
        }
    )
    started = time.perf_counter()
    subprocess.run(["bash", str(SETUP)], env=env, check=True, capture_output=True, timeout=900)
    elapsed = time.perf_counter() - started
    python = next(
        line.split("=", 1)[1] for line in out.read_text().splitlines() if line.startswith("python=")
    )
    return elapsed, Path(python)


def first_command(python: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", FIRST_COMMAND], check=True, timeout=120)
    return time.perf_counter() - started


def show(name: str, values: list[float], anchor: list[float] | None = None) -> None:
    line = f"{name:<32} min {min(values):6.2f} s  median {statistics.median(values):6.2f} s"
    if anchor:
        line += f"  ({statistics.median(values) / statistics.median(anchor):.2f}x the anchor)"
    print(line, flush=True)


def main() -> int:
    cold: list[float] = []
    warm: list[float] = []
    restored: list[float] = []
    fresh: list[float] = []
    again: list[float] = []
    with tempfile.TemporaryDirectory(prefix="azpytest-bench-setup-") as scratch:
        base = Path(scratch)
        shared_uv_cache = base / "uv-cache-warm"
        for run in range(RUNS):
            # cold: nothing cached anywhere
            one = base / f"cold-{run}"
            seconds, python = setup(one / "temp", one / "tools", one / "uv-cache")
            cold.append(seconds)
            fresh.append(first_command(python))
            again.append(first_command(python))
            # uv warm: uv in the tool cache, uv's cache warm, no environment of this key
            two = base / f"warm-{run}"
            (two / "tools").mkdir(parents=True)
            shutil.copytree(one / "tools" / "azpytest-uv", two / "tools" / "azpytest-uv")
            if run == 0:
                setup(base / "prime" / "temp", two / "prime-tools", shared_uv_cache)
            seconds, _ = setup(two / "temp", two / "tools", shared_uv_cache)
            warm.append(seconds)
            # restored: the environment as the Actions cache puts it back, then setup
            saved = base / f"saved-{run}.tar"
            env_dir = python.parent.parent
            with tarfile.open(saved, "w") as archive:
                archive.add(env_dir, arcname=str(env_dir).lstrip("/"))
            shutil.rmtree(one / "tools")
            started = time.perf_counter()
            with tarfile.open(saved) as archive:
                archive.extractall("/", filter="tar")
            untar = time.perf_counter() - started
            seconds, _ = setup(one / "temp", one / "tools", one / "uv-cache")
            restored.append(untar + seconds)
            shutil.rmtree(one)
            shutil.rmtree(two)
    show("setup, cold", cold)
    show("setup, uv and its cache warm", warm, cold)
    show("setup, restored environment", restored, cold)
    show("first command, fresh environment", fresh)
    show("the same command again", again)
    print(
        f"first command fresh / again: {statistics.median(fresh) / statistics.median(again):.2f}"
        " (target <= 1.3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

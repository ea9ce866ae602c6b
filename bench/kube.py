"""`kubectl get ns` x10 with the kubeconfig `azpytest prepare` writes (its user runs `azpytest
kube-token`) against the same calls with a static-token kubeconfig, in the sandbox. Prints
wall and CPU time per call, the ratio, the exec plugin's own CPU per call, and the Entra ID
and GitHub requests the sandbox's request log counted. Targets (issue 15): within 2x of the
static token, under 100 ms of plugin CPU per call, one Entra request per token lifetime.

Two ways kubectl meets the plugin: a later step of the job (no broker: the token cache in the
run folder) and the tests under `azpytest exec` (the job's token broker).

    .venv/bin/python bench/kube.py
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from azpytest_sandbox import Sandbox

CALLS = 10
KUBECTL = "kubectl"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare(sandbox: Sandbox, folder: Path) -> dict[str, str]:
    """A later step's environment after `azpytest prepare` (GITHUB_ENV applied)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZPYTEST_"))},
        **sandbox.env,
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(folder),
        "GITHUB_ENV": str(folder / "github-env"),
        "GITHUB_RUN_ID": "1",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "bench",
        "AZPYTEST_AKS_RESOURCE_GROUP": "rg-azpytest",
        "AZPYTEST_AKS_CLUSTER": "aks-azpytest",
        "HOME": str(folder),
    }
    subprocess.run(
        [sys.executable, "-m", "azpytest", "prepare"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from azpytest.github import read_file_commands

    exported = read_file_commands(folder / "github-env")
    return {**env, **exported}


def static_kubeconfig(env: dict[str, str], folder: Path) -> Path:
    """The same cluster and context with the token written into the file."""
    config = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    user = config["users"][0]["user"]["exec"]
    # Without the run folder: this token is the bench's own, not one the cache counts.
    alone = {k: v for k, v in env.items() if k != "AZPYTEST_RUN_DIR"}
    answer = subprocess.run(
        [user["command"], *user["args"]], env=alone, check=True, capture_output=True, text=True
    )
    token = json.loads(answer.stdout)["status"]["token"]
    config["users"][0]["user"] = {"token": token}
    path = folder / "static-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def kubectl_calls(env: dict[str, str], kubeconfig: Path, prefix: list[str]) -> tuple[float, float]:
    """Median wall seconds per `kubectl get ns` and CPU seconds per call (kubectl + plugin)."""
    walls = []
    cpu_before = children_cpu()
    for _ in range(CALLS):
        began = time.perf_counter()
        subprocess.run(
            [*prefix, KUBECTL, "--request-timeout=20s", "get", "ns"],
            env={**env, "KUBECONFIG": str(kubeconfig)},
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - began)
    return statistics.median(walls), (children_cpu() - cpu_before) / CALLS


def plugin_cpu(env: dict[str, str], kubeconfig: Path) -> float:
    """The exec plugin alone: CPU seconds per invocation (median of CALLS)."""
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]
    plugin_env = {**env, **{e["name"]: e["value"] for e in user.get("env") or []}}
    times = []
    for _ in range(CALLS):
        before = children_cpu()
        subprocess.run(
            [user["command"], *user["args"]], env=plugin_env, check=True, stdout=subprocess.DEVNULL
        )
        times.append(children_cpu() - before)
    return statistics.median(times)


def count(sandbox: Sandbox) -> str:
    entra = len(sandbox.log.select(service="entra"))
    github = len(sandbox.log.select(service="github"))
    return f"{entra} Entra ID, {github} GitHub request(s)"


def main() -> None:
    with Sandbox() as sandbox, tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        env = prepare(sandbox, folder)
        prepared = Path(env["KUBECONFIG"])
        static = static_kubeconfig(env, folder)
        kubectl_calls(env, static, [])  # kubectl's discovery cache, warm for both
        print(f"kubectl get ns x{CALLS} (median wall per call; CPU per call, kubectl + plugin)")

        static_wall, static_cpu = kubectl_calls(env, static, [])
        print(
            f"  static-token kubeconfig:           {static_wall * 1000:6.0f} ms, "
            f"CPU {static_cpu * 1000:4.0f} ms"
        )

        sandbox.log.clear()
        began, cpu_before = time.perf_counter(), children_cpu()
        subprocess.run(
            [KUBECTL, "--request-timeout=20s", "get", "ns"],
            env={**env, "KUBECONFIG": str(prepared)},
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        print(
            f"  prepared, first call (cache empty): {(time.perf_counter() - began) * 1000:6.0f} ms,"
            f" CPU {(children_cpu() - cpu_before) * 1000:4.0f} ms; {count(sandbox)}"
        )
        sandbox.log.clear()
        wall, cpu = kubectl_calls(env, prepared, [])
        print(
            f"  prepared, later step (token cache): {wall * 1000:6.0f} ms, CPU {cpu * 1000:4.0f} ms"
            f" = {wall / static_wall:.2f}x static (target <= 2x); {count(sandbox)}"
        )

        sandbox.log.clear()
        # Inside exec: one call to warm the broker, then CALLS timed ones (median wall).
        inner = (
            "import statistics, subprocess, sys, time\n"
            f"cmd = [{KUBECTL!r}, '--request-timeout=20s', 'get', 'ns']\n"
            "subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)\n"
            "walls = []\n"
            f"for _ in range({CALLS}):\n"
            "    began = time.perf_counter()\n"
            "    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)\n"
            "    walls.append(time.perf_counter() - began)\n"
            "print('median-wall', statistics.median(walls))\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "azpytest", "exec", "--", sys.executable, "-c", inner],
            env={**env, "KUBECONFIG": str(prepared)},
            check=True,
            capture_output=True,
            text=True,
        )
        [median] = [
            float(line.split()[1])
            for line in done.stdout.splitlines()
            if line.startswith("median-wall ")
        ]
        print(
            f"  prepared, under azpytest exec (broker): {median * 1000:6.0f} ms"
            f" = {median / static_wall:.2f}x static (target <= 2x);"
            f" 1 + {CALLS} calls: {count(sandbox)}"
        )

        print(
            f"exec plugin alone, cached token: {plugin_cpu(env, prepared) * 1000:.0f} ms CPU per "
            "call (target < 100 ms)"
        )


if __name__ == "__main__":
    main()

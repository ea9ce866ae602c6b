"""The broker's audit log is complete when the command is stopped: `azpytest exec` and
`azpytest run` ended by SIGTERM (as a cancelled step is) still write every request, the
cached hits as lines with "count". Real azure-identity against the sandbox's Entra."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from azpytest_sandbox import Sandbox

CLIENT_ID = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"  # the sandbox's default app
ASKED = 300

# Asks the broker as an SDK would (one kept-alive connection), then waits to be stopped.
CLIENT = f"""
import http.client, os, time, urllib.parse

endpoint = urllib.parse.urlsplit(os.environ["IDENTITY_ENDPOINT"])
connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=30)
for n in range({ASKED}):
    resource = "https://vault.azure.net" if n % 3 else "https://management.azure.com"
    query = urllib.parse.urlencode({{"api-version": "2019-08-01", "resource": resource}})
    connection.request(
        "GET", f"{{endpoint.path}}?{{query}}",
        headers={{"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"], "Metadata": "true"}},
    )
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
open(os.environ["RECORD_TO"], "w").write("asked")
time.sleep(60)
"""


def _env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "IDENTITY_"))
    }
    env.update(sandbox.env)
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "AZURE_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZPYTEST_RUN_DIR": str(tmp_path / "run"),
            "RECORD_TO": str(tmp_path / "asked"),
        }
    )
    return env


@pytest.mark.parametrize("step", ["exec", "run"])
def test_sigterm_leaves_an_audit_log_with_every_request(
    tmp_path: Path, sandbox: Sandbox, step: str
) -> None:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    if step == "exec":
        args = ["exec", "--", sys.executable, str(client)]
    else:
        root = tmp_path / "project"
        root.mkdir()
        (root / "test_asks.py").write_text(
            f"import runpy\n\ndef test_asks():\n    runpy.run_path({str(client)!r})\n"
        )
        args = ["run", f"--working-directory={root}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "azpytest", *args],
        env=_env(sandbox, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "asked").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the client did not finish asking"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + 15, out + err
    lines = (tmp_path / "run" / "audit.jsonl").read_text().splitlines()
    entries = [e for e in map(json.loads, lines) if e.get("source") == "broker"]
    asked: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        asked[(entry["resource"], entry["outcome"])] += entry.get("count", 1)
    assert asked == {
        ("https://management.azure.com", "fresh"): 1,
        ("https://management.azure.com", "cached"): ASKED // 3 - 1,
        ("https://vault.azure.net", "fresh"): 1,
        ("https://vault.azure.net", "cached"): ASKED - ASKED // 3 - 1,
    }
    assert len(entries) < ASKED // 10  # the cached hits were written as runs, not one a line
    assert (
        "azpytest: token broker: 300 request(s), 300 served (2 fetched from Entra ID, 298 from "
        "its cache), 0 refused"
    ) in out

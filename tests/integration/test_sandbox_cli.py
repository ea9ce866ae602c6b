"""`azpytest sandbox` as a user runs it: a command inside the stand-ins' environment."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import requests

from azpytest_sandbox import Sandbox


def azpytest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azpytest", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_env_shows_the_variables_and_everything_stops_after() -> None:
    result = azpytest("sandbox", "--", "env")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert Path(env["REQUESTS_CA_BUNDLE"]).name == "ca-bundle.pem"
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"].startswith("https://127.0.0.1:")
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    assert env["AZURE_CLIENT_ID"] == "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
    assert env["AZURE_TENANT_ID"] == "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
    # Stopped: nothing listens on the proxy port and the CA bundle is gone.
    assert not listening(int(env["HTTPS_PROXY"].rsplit(":", 1)[1]))
    assert not Path(env["REQUESTS_CA_BUNDLE"]).exists()


def test_exit_code_of_the_command_is_passed_through() -> None:
    assert azpytest("sandbox", "--", "sh", "-c", "exit 3").returncode == 3


def test_a_real_client_in_the_command_reads_a_secret(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent("""
        import os, requests
        from azure.identity import ClientAssertionCredential
        from azure.keyvault.secrets import SecretClient

        def assertion():
            url = os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=api://AzureADTokenExchange"
            auth = {"Authorization": "Bearer " + os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]}
            return requests.get(url, headers=auth, timeout=10).json()["value"]

        tenant, client = os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"]
        cred = ClientAssertionCredential(tenant, client, assertion)
        kv = SecretClient("https://kv-azpytest.vault.azure.net", cred)
        print("pg-host =", kv.get_secret("pg-host").value)
    """)
    )
    log = tmp_path / "requests.jsonl"
    result = azpytest("sandbox", "--log", str(log), "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pg-host = 127.0.0.1\n"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["service"], e["method"], e["status"]) for e in entries] == [
        ("keyvault", "GET", 401),
        ("github", "GET", 200),
        ("entra", "POST", 200),
        ("keyvault", "GET", 200),
    ]
    assert entries[-1]["who"] == "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"


def test_malformed_scenario_exits_2_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("tenants:\n  - id: [unclosed\n")
    result = azpytest("sandbox", "--scenario", str(broken), "--", "true")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        f"azpytest sandbox: error: --scenario {broken}: expected ',' or ']', "
        "but got '<stream end>' at line 3, column 1"
    )


def test_invalid_scenario_field_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("vaults:\n  - name: kv\n    secrets: {a: b}\n")
    result = azpytest("sandbox", "--scenario", str(bad), "--", "true")
    assert result.returncode == 2
    assert result.stderr == (
        f"azpytest sandbox: error: --scenario {bad}: vaults[0].name: 'kv' is not a "
        "vault name (3-24 letters, digits, -)\n"
    )


def test_missing_scenario_file_exits_2(tmp_path: Path) -> None:
    result = azpytest("sandbox", "--scenario", str(tmp_path / "nope.yaml"), "--", "true")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "cannot read the scenario file (No such file or directory)"
    )


def test_two_sandboxes_side_by_side(make_sandbox: Callable[..., Sandbox]) -> None:
    first, second = make_sandbox(), make_sandbox()
    assert first.proxy_port != second.proxy_port
    for sandbox in (first, second):
        answer = requests.get(
            sandbox.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
            headers={"Authorization": "Bearer " + sandbox.request_token},
            verify=str(sandbox.ca_bundle),
            timeout=10,
        )
        assert answer.status_code == 200
    # Each issues with its own key: one's request token is refused by the other.
    answer = requests.get(
        second.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
        headers={"Authorization": "Bearer " + first.request_token},
        verify=str(second.ca_bundle),
        timeout=10,
    )
    assert answer.status_code == 401

"""The token broker: a suite's own `DefaultAzureCredential()` works in CI, for any length of run.

Real azure-identity, azure-keyvault-secrets, requests (and the az CLI where installed) against
the sandbox; the broker is reached only through IDENTITY_ENDPOINT / IDENTITY_HEADER.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from azpytest import broker, settings
from azpytest.github import Workflow
from azpytest_sandbox import Sandbox

Step = Callable[..., Any]
CLIENT_ID = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"  # the sandbox's default app
VAULT = "https://vault.azure.net"
AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"

# A suite as teams write them: its conftest builds Azure clients from the environment, with
# DefaultAzureCredential, and knows nothing about azpytest.
USER_CONFTEST = """
    import base64
    import os

    import pytest
    import requests
    import yaml
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    ARM = "https://management.azure.com"
    AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"


    @pytest.fixture(scope="session")
    def credential():
        return DefaultAzureCredential()


    @pytest.fixture(scope="session")
    def secrets(credential):
        return SecretClient("https://kv-azpytest.vault.azure.net", credential)


    @pytest.fixture(scope="session")
    def arm(credential):
        session = requests.Session()

        def call(method, path, api_version="2022-12-01"):
            token = credential.get_token(f"{ARM}/.default").token
            response = session.request(
                method,
                ARM + path,
                params={"api-version": api_version},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            response.raise_for_status()
            return response.json()

        return call


    @pytest.fixture(scope="session")
    def kube(arm, credential, tmp_path_factory):
        cluster_id = (
            f"/subscriptions/{os.environ['AZURE_SUBSCRIPTION_ID']}/resourceGroups/rg-azpytest"
            "/providers/Microsoft.ContainerService/managedClusters/aks-azpytest"
        )
        answer = arm("POST", f"{cluster_id}/listClusterUserCredential", "2025-10-01")
        config = yaml.safe_load(base64.b64decode(answer["kubeconfigs"][0]["value"]))
        cluster = config["clusters"][0]["cluster"]
        ca = tmp_path_factory.mktemp("kube") / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))

        def get(path):
            token = credential.get_token(f"{AKS_SERVER_APP}/.default").token
            response = requests.get(
                cluster["server"] + path,
                headers={"Authorization": f"Bearer {token}"},
                verify=str(ca),
                timeout=30,
            )
            response.raise_for_status()
            return response.json()

        return get
"""

USER_TESTS = """
    import os


    def test_reads_a_secret(secrets):
        assert secrets.get_secret("pg-host").value == "127.0.0.1"


    def test_lists_subscriptions(arm):
        found = [s["subscriptionId"] for s in arm("GET", "/subscriptions")["value"]]
        assert found == [os.environ["AZURE_SUBSCRIPTION_ID"]]


    def test_lists_namespaces(kube):
        assert kube("/api/v1/namespaces")["kind"] == "NamespaceList"


    def test_environment_names_the_broker_and_no_secret(tmp_path_factory):
        assert os.environ["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
        assert os.environ["IDENTITY_HEADER"]
        assert os.environ["AZURE_CLIENT_ID"] == "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
        assert "AZURE_CLIENT_SECRET" not in os.environ
        assert "AZURE_FEDERATED_TOKEN_FILE" not in os.environ
        with open(os.environ["RECORD_ENDPOINT_TO"], "w") as handle:
            handle.write(os.environ["IDENTITY_ENDPOINT"] + " " + str(os.getpid()))
"""

# Thirty seconds of 5-second access tokens and 3-second GitHub assertions: a new scope every
# 1.5 s through our credential, and the do-it-yourself federated token file next to it.
LONG_TEST = """
    import base64
    import itertools
    import json
    import os
    import time

    import requests
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import WorkloadIdentityCredential

    SCOPES = {
        "vault": "https://vault.azure.net/.default",
        "arm": "https://management.azure.com/.default",
        "storage": "https://storage.azure.com/.default",
        "aks": "6dae42f8-4368-4678-94ff-3960e28e3630/.default",
    }


    def claims(token):
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


    def github_assertion():
        url = os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=api://AzureADTokenExchange"
        auth = {"Authorization": "Bearer " + os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]}
        return requests.get(url, headers=auth, timeout=10).json()["value"]


    def test_thirty_seconds_of_new_scopes(credential, secrets, arm, kube, tmp_path):
        token_file = tmp_path / "federated-token"
        token_file.write_text(github_assertion())  # the do-it-yourself way: written once
        diy = WorkloadIdentityCredential(
            tenant_id=os.environ["AZURE_TENANT_ID"],
            client_id=os.environ["AZURE_CLIENT_ID"],
            token_file_path=str(token_file),
        )

        def storage():
            token = credential.get_token(SCOPES["storage"]).token
            return claims(token)["aud"] == "https://storage.azure.com"

        def time_left(scope):  # what a token handed out has left: never nearly expired
            return claims(credential.get_token(scope).token)["exp"] - time.time()

        uses = {
            "vault": lambda: secrets.get_secret("pg-host").value == "127.0.0.1",
            "arm": lambda: len(arm("GET", "/subscriptions")["value"]) == 1,
            "storage": storage,
            "aks": lambda: kube("/api/v1/namespaces")["kind"] == "NamespaceList",
        }
        # Theirs works while the file's assertion lives (3 s)...
        assert diy.get_token(SCOPES["vault"]).token
        ours, theirs = [], []
        names = itertools.cycle(SCOPES)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            name = next(names)
            assert uses[name](), name
            assert uses["vault"](), "vault again"
            left = min(time_left(scope) for scope in SCOPES.values())
            assert left >= 0.5, f"a token with {left:.2f} s left"
            ours.append(name)
            try:
                diy.get_token(SCOPES[name])
                theirs.append((name, "ok"))
            except ClientAuthenticationError as exc:
                theirs.append((name, exc.message))
            time.sleep(1.5)  # pacing, not a timing assertion

        assert len(ours) >= 12 and set(ours) == set(SCOPES)
        # ... then fails with AADSTS700024 for every token it has not cached.
        failed = [message for _, message in theirs if message != "ok"]
        assert failed and all("AADSTS700024" in message for message in failed), theirs
        assert all(message != "ok" for _, message in theirs[-4:]), theirs
"""


def suite(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


def run_dir(result: Any) -> Path:
    return Path(result.runner_temp, "azpytest", "12345678901-1-test")


def audit(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry.get("source") == "broker"]


def requests_by(entries: list[dict[str, Any]], *fields: str) -> Counter[tuple[Any, ...]]:
    """Requests per value of `fields`: a line of cached hits stands for `count` of them."""
    found: Counter[tuple[Any, ...]] = Counter()
    for entry in entries:
        found[tuple(entry[name] for name in fields)] += entry.get("count", 1)
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_of(endpoint: str) -> int:
    return int(endpoint.split(":")[2].split("/")[0])


def processes_with(variable: str) -> list[int]:
    """Processes whose environment holds `variable` (a NAME=value line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if variable.encode() in environ:
                found.append(int(entry.name))
    return found


def wait_for(path: Path, process: subprocess.Popen[str], seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written in {seconds} s")


def azpytest_env(sandbox: Sandbox | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A CI-mode environment for `python -m azpytest ...` run directly."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "IDENTITY_"))
    }
    env.update(sandbox.env if sandbox is not None else {})
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "AZURE_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZPYTEST_RUN_DIR": str(tmp_path / "run"),
            **extra,
        }
    )
    return env


@contextmanager
def in_process_broker(sandbox: Sandbox, tmp_path: Path) -> Iterator[broker.Broker]:
    """The broker as `azpytest run` starts it, in this process, with the sandbox's GitHub."""
    environ = {**sandbox.env, "GITHUB_ACTIONS": "true", "AZPYTEST_RUN_DIR": str(tmp_path)}
    loaded = settings.load({}, environ)
    with broker.for_settings(loaded, Workflow(environ, out=io.StringIO())) as served:
        yield served


def ask(endpoint: str, header: str | None, **params: str) -> requests.Response:
    headers = {"X-IDENTITY-HEADER": header} if header is not None else {}
    query = {"api-version": "2019-08-01", "resource": VAULT, **params}
    return requests.get(endpoint, params=query, headers=headers, timeout=30)


# ---------------------------------------------------------------------------- a user's suite


def test_a_users_suite_passes_in_ci_with_no_azpytest_fixture(
    tmp_path: Path, sandbox: Sandbox, actions_step: Step
) -> None:
    root = suite(tmp_path, {"conftest.py": USER_CONFTEST, "test_cloud.py": USER_TESTS})
    record = tmp_path / "endpoint.txt"
    result = actions_step(
        sandbox,
        "run",
        env={
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "RECORD_ENDPOINT_TO": str(record),
            # What a do-it-yourself setup leaves behind; the broker must win over both.
            "AZURE_CLIENT_SECRET": "not-the-way",
            "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "stale-token"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert result.commands("notice") == [
        "AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE removed from the command's "
        "environment: with them its DefaultAzureCredential would not use the token broker "
        "(set broker: false to keep them)."
    ]
    served = requests_by(audit(run_dir(result) / "audit.jsonl"), "resource", "outcome")
    assert served[("https://vault.azure.net", "fresh")] == 1
    assert served[("https://management.azure.com", "fresh")] == 1
    assert served[(AKS_SERVER_APP, "fresh")] == 1
    assert sum(n for (_, outcome), n in served.items() if outcome not in ("fresh", "cached")) == 0
    # After the run nothing listens on the broker's port, and no process of it is left.
    endpoint, _pid = record.read_text().split()
    assert not listening(port_of(endpoint))
    assert processes_with(f"IDENTITY_ENDPOINT={endpoint}") == []


def test_nothing_the_run_writes_holds_a_token_or_the_header(
    tmp_path: Path, sandbox: Sandbox, actions_step: Step
) -> None:
    failing = """
        import os

        from azure.identity import ManagedIdentityCredential


        def test_uses_the_wrong_identity():
            # Fails with the broker's 400, which lands in the JUnit file and the artifacts.
            ManagedIdentityCredential(client_id="00000000-0000-4000-8000-000000000000").get_token(
                "https://vault.azure.net/.default"
            )


        def test_fails_after_getting_tokens(secrets, arm):
            assert secrets.get_secret("pg-host").value
            assert arm("GET", "/subscriptions")["value"] == "something else"
    """
    root = suite(
        tmp_path,
        {"conftest.py": USER_CONFTEST, "test_cloud.py": USER_TESTS, "test_bad.py": failing},
    )
    result = actions_step(
        sandbox,
        "run",
        env={"AZPYTEST_WORKING_DIRECTORY": str(root), "RECORD_ENDPOINT_TO": str(tmp_path / "e")},
    )
    assert result.returncode == 1
    junit = (run_dir(result) / "junit.xml").read_text()
    assert "Unable to load the proper Managed Identity. azpytest token broker" in junit
    assert (run_dir(result) / "artifacts").is_dir()
    masks = result.commands("add-mask")
    headers = [m for m in masks if not m.startswith("eyJ")]
    assert len(headers) == 1  # the broker's header; the rest are tokens
    assert len([m for m in masks if m.startswith("eyJ")]) >= 2
    written = result.written()  # stdout (masks excepted), stderr, summary, every file
    assert "audit.jsonl" in {p.name for p in result.runner_temp.rglob("*")}
    assert "eyJ" not in written
    assert headers[0] not in written


# ---------------------------------------------------------------------------- tokens that last


def test_thirty_seconds_of_short_tokens_never_fail_while_a_token_file_does(
    tmp_path: Path, make_sandbox: Callable[..., Sandbox], actions_step: Step
) -> None:
    sandbox = make_sandbox({"token_lifetime_s": 5, "github": {"token_lifetime_s": 3}})
    root = suite(tmp_path, {"conftest.py": USER_CONFTEST, "test_long.py": LONG_TEST})
    result = actions_step(
        sandbox, "run", env={"AZPYTEST_WORKING_DIRECTORY": str(root)}, timeout=180
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "1 passed" in result.stdout
    entries = audit(run_dir(result) / "audit.jsonl")
    assert entries and all(e["status"] == 200 for e in entries)
    fresh = Counter(e["resource"] for e in entries if e["outcome"] == "fresh")
    # Every resource was renewed along the way (tokens live 5 s), and the cache answered too.
    assert all(fresh[r] >= 2 for r in (VAULT, "https://management.azure.com")), fresh
    assert all(fresh[r] >= 2 for r in ("https://storage.azure.com", AKS_SERVER_APP)), fresh
    assert any(e["outcome"] == "cached" for e in entries)
    refusals = [e for e in sandbox.log.select(service="entra") if e.status == 401]
    assert refusals  # the token file's expired assertion, refused by Entra ID


def test_twenty_threads_asking_at_once_make_one_entra_request(
    tmp_path: Path, make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[..., Sandbox]
) -> None:
    sandbox = use_sandbox(make_sandbox())
    sandbox.add_fault(service="entra", latency_ms=300)  # all 20 arrive while it is in flight
    start = threading.Barrier(20)
    with in_process_broker(sandbox, tmp_path) as served:

        def one(_: int) -> requests.Response:
            start.wait()
            return ask(served.endpoint, served.header)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.json()["access_token"] for a in answers}) == 1
    assert len(sandbox.log.select(service="entra", method="POST")) == 1
    outcomes = requests_by(audit(tmp_path / "audit.jsonl"), "outcome")
    assert outcomes == {("fresh",): 1, ("cached",): 19}


# ---------------------------------------------------------------------------- refusals


def test_401_without_or_with_a_wrong_header_and_400_for_another_client_id(
    tmp_path: Path, sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with in_process_broker(sandbox_env, tmp_path) as served:
        missing = ask(served.endpoint, None)
        wrong = ask(served.endpoint, "guessed")
        other = ask(
            served.endpoint, served.header, client_id="00000000-0000-4000-8000-0000000000aa"
        )
        good = ask(served.endpoint, served.header, client_id=CLIENT_ID.upper())

        # The SDK's own words around ours: what a user's test would show.
        monkeypatch.setenv("IDENTITY_ENDPOINT", served.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", "guessed")
        with pytest.raises(ClientAuthenticationError) as unauthorized:
            ManagedIdentityCredential().get_token(f"{VAULT}/.default")
        monkeypatch.setenv("IDENTITY_HEADER", served.header)
        with pytest.raises(ClientAuthenticationError) as wrong_identity:
            ManagedIdentityCredential(client_id="00000000-0000-4000-8000-0000000000aa").get_token(
                f"{VAULT}/.default"
            )
        token = ManagedIdentityCredential(client_id=CLIENT_ID).get_token(f"{VAULT}/.default")

    assert (missing.status_code, wrong.status_code, other.status_code) == (401, 401, 400)
    for answer in (missing, wrong, other):
        body = answer.json()
        assert set(body) == {"statusCode", "message", "correlationId"}
        assert body["statusCode"] == answer.status_code
    assert missing.json()["message"] == (
        "azpytest token broker: the request has no X-IDENTITY-HEADER header. Only the command "
        "azpytest started may ask for tokens: send X-IDENTITY-HEADER with the value of its "
        "IDENTITY_HEADER variable."
    )
    assert "has a wrong X-IDENTITY-HEADER header" in wrong.json()["message"]
    assert other.json()["message"] == (
        "Unable to load the proper Managed Identity. azpytest token broker: it serves one "
        f"identity, {CLIENT_ID}, and the request asks for "
        "client_id=00000000-0000-4000-8000-0000000000aa. Leave AZURE_CLIENT_ID as azpytest set "
        "it, or pass no client_id/object_id."
    )
    assert good.status_code == 200
    body = good.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert (body["resource"], body["token_type"], body["client_id"]) == (VAULT, "Bearer", CLIENT_ID)
    # Told a minute before the real expiry, so a client's cache never holds an expired token.
    from azpytest.identity import unverified_claims

    assert int(body["expires_on"]) == unverified_claims(body["access_token"])["exp"] - 60
    assert "has a wrong X-IDENTITY-HEADER header" in unauthorized.value.message
    assert "400, Unable to load the proper Managed Identity. azpytest token broker" in (
        wrong_identity.value.message
    )
    assert token.token.startswith("eyJ")


def test_an_entra_refusal_reaches_the_sdk_with_what_to_fix(
    tmp_path: Path,
    make_sandbox: Callable[..., Sandbox],
    use_sandbox: Callable[..., Sandbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = use_sandbox(make_sandbox({"github": {"ref": "refs/heads/feature"}}))
    with in_process_broker(sandbox, tmp_path) as served:
        monkeypatch.setenv("IDENTITY_ENDPOINT", served.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", served.header)
        monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
        with pytest.raises(ClientAuthenticationError) as refused:
            DefaultAzureCredential().get_token(f"{VAULT}/.default")
        again = ask(served.endpoint, served.header)
    message = refused.value.message
    assert "ManagedIdentityCredential" in message
    assert "azpytest token broker: no token for resource https://vault.azure.net." in message
    assert "Entra ID found no federated credential on app" in message
    assert "repo:octo-org/octo-repo:ref:refs/heads/feature" in message
    assert "az ad app federated-credential create" in message
    assert again.status_code == 400
    assert [e["outcome"] for e in audit(tmp_path / "audit.jsonl")] == ["refused", "refused"]


# ---------------------------------------------------------------------------- azpytest exec


def azpytest(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azpytest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_exec_passes_the_exit_code_through(tmp_path: Path) -> None:
    env = azpytest_env(None, tmp_path)
    assert azpytest("exec", "--", "sh", "-c", "exit 3", env=env).returncode == 3
    assert azpytest("exec", "--", "sh", "-c", "kill -TERM $$", env=env).returncode == 128 + 15
    missing = azpytest("exec", "--", "no-such-command-here", env=env)
    assert missing.returncode == 127
    assert "azpytest exec: error: cannot run 'no-such-command-here'" in missing.stderr


def test_sandbox_then_exec_gives_any_command_working_azure_code(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(
        textwrap.dedent("""
        import os
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        print("client", os.environ["AZURE_CLIENT_ID"], "tenant", os.environ["AZURE_TENANT_ID"])
        vault = SecretClient("https://kv-azpytest.vault.azure.net", DefaultAzureCredential())
        print("pg-host =", vault.get_secret("pg-host").value)
    """)
    )
    # No identity given: the sandbox's default scenario exports the app that trusts its token.
    env = {k: v for k, v in azpytest_env(None, tmp_path).items() if not k.startswith("AZURE_")}
    result = azpytest(
        "sandbox", "--", sys.executable, "-m", "azpytest", "exec", "--", sys.executable, str(client),
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [line for line in result.stdout.splitlines() if line and not line.startswith("::")]
    ours = [line for line in shown if line.startswith("azpytest: ")]
    assert [line for line in shown if line not in ours] == [
        f"client {CLIENT_ID} tenant 8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
        "pg-host = 127.0.0.1",
    ]
    assert shown[-1] == (
        "azpytest: token broker: 1 request(s), 1 served (1 fetched from Entra ID, 0 from its "
        "cache), 0 refused"
    )


@pytest.mark.parametrize("step", ["exec", "run"])
def test_sigterm_leaves_nothing_listening_and_no_process(
    tmp_path: Path, sandbox: Sandbox, step: str
) -> None:
    record = tmp_path / "endpoint.txt"
    body = (
        "import os, time\n"
        "open(os.environ['RECORD_ENDPOINT_TO'], 'w').write(\n"
        "    os.environ['IDENTITY_ENDPOINT'] + ' ' + str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    if step == "exec":
        args = ["exec", "--", sys.executable, "-c", body]
    else:
        root = suite(
            tmp_path, {"test_slow.py": f"def test_slow():\n{textwrap.indent(body, '    ')}"}
        )
        args = ["run", f"--working-directory={root}"]
    env = azpytest_env(sandbox, tmp_path, RECORD_ENDPOINT_TO=str(record))
    process = subprocess.Popen(
        [sys.executable, "-m", "azpytest", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint, pid = wait_for(record, process).split()
        assert listening(port_of(endpoint))
        process.send_signal(signal.SIGTERM)
        # Grace (5 s) + leftovers (2 s) + the broker and az teardown; generous for a loaded
        # machine: a hang still fails.
        process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + 15
    assert not listening(port_of(endpoint))
    assert not Path(f"/proc/{pid}").exists()
    assert processes_with(f"IDENTITY_ENDPOINT={endpoint}") == []


def test_broker_false_runs_pytest_without_it(tmp_path: Path, actions_step: Step) -> None:
    root = suite(
        tmp_path,
        {
            "test_env.py": "import os\n\ndef test_no_broker():\n    assert 'IDENTITY_ENDPOINT' not in os.environ\n"
        },
    )
    env = {
        "AZPYTEST_WORKING_DIRECTORY": str(root),
        "AZPYTEST_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
        "AZPYTEST_CLIENT_ID": CLIENT_ID,
        "AZPYTEST_BROKER": "false",
    }
    result = actions_step(None, "run", env=env)
    assert result.returncode == 0, result.stdout
    assert "token broker" not in result.stdout


# ---------------------------------------------------------------------------- the az CLI


def test_az_cli_logs_in_with_identity_and_reads_a_secret(tmp_path: Path, az_cli: str) -> None:
    az = az_cli
    script = tmp_path / "az.sh"
    script.write_text(
        textwrap.dedent(f"""
        set -e
        export AZURE_CONFIG_DIR={tmp_path / "az-config"} AZURE_CORE_COLLECT_TELEMETRY=false
        {az} login --identity --client-id "$AZURE_CLIENT_ID" --query "[].id" -o tsv
        {az} keyvault secret show --vault-name kv-azpytest --name pg-host --query value -o tsv
    """)
    )
    env = {k: v for k, v in azpytest_env(None, tmp_path).items() if not k.startswith("AZURE_")}
    result = azpytest(
        "sandbox", "--", sys.executable, "-m", "azpytest", "exec", "--", "sh", str(script),
        env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [
        line
        for line in result.stdout.splitlines()
        if line and not line.startswith(("::", "azpytest: "))
    ]
    assert shown == ["c0ffee00-1234-4abc-8def-0123456789ab", "127.0.0.1"]
    resources = [e["resource"] for e in audit(tmp_path / "run" / "audit.jsonl")]
    assert resources == ["https://management.core.windows.net/", VAULT]
    # az keeps managed-identity tokens in memory only: nothing of them in its config folder.
    saved = [p for p in (tmp_path / "az-config").rglob("*") if p.is_file()]
    assert saved and not any(b"eyJ" in p.read_bytes() for p in saved)

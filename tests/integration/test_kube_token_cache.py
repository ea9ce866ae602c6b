"""kubectl at the speed of a cached token (issue 15, item 3): the exec plugin of the prepared
kubeconfig answers from the job's broker under `azpytest run`, else from a 0600 token cache in
the run folder shared by every kubectl call until shortly before the token expires. Counted
from the sandbox's request log, with /usr/bin/kubectl and the kubeconfig `prepare` wrote."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from azpytest.kube import install_kubelogin
from azpytest.rundir import RunDir
from azpytest_sandbox import Sandbox
from azpytest_sandbox.scenario import AKS_SERVER_APP

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CLIENT = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # kubelogin's, in ARM's kubeconfig
ARM_KUBELOGIN_ARGS = [
    "get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_APP,
    "--client-id", AZURE_CLI_CLIENT_ID, "--tenant-id", TENANT, "--login", "devicecode",
]  # fmt: skip
AKS = {"AZPYTEST_AKS_RESOURCE_GROUP": "rg-azpytest", "AZPYTEST_AKS_CLUSTER": "aks-azpytest"}
KUBECTL = Path("/usr/bin/kubectl")
EXEC_INFO = json.dumps(
    {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1",
        "spec": {"interactive": False},
    }
)

Step = Callable[..., Any]

pytestmark = pytest.mark.skipif(
    not KUBECTL.exists(), reason="/usr/bin/kubectl is not installed (make bootstrap)"
)


class Prepared:
    """What `azpytest prepare` left for the later steps of the job."""

    def __init__(self, sandbox: Sandbox, result: Any, home: Path) -> None:
        assert result.returncode == 0, result.stdout + result.stderr
        self.sandbox = sandbox
        self.result = result
        self.kubeconfig = Path(result.env_file["KUBECONFIG"])
        self.run_dir = Path(result.env_file["AZPYTEST_RUN_DIR"])
        self.home = home
        sandbox.log.clear()  # what follows is the later steps' only

    def step_env(self) -> dict[str, str]:
        """A later step: the runner's variables and what prepare exported; no broker."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "RUNNER_"))
            and k not in ("KUBECONFIG", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")
        }
        return {
            **env,
            **self.sandbox.env,
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            **self.result.env_file,
            "HOME": str(self.home),  # kubectl's discovery cache
        }

    def kubectl_command(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--request-timeout=20s", f"--kubeconfig={self.kubeconfig}", *args]

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.kubectl_command(*args),
            env=self.step_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def plugin(self, *python_options: str) -> subprocess.CompletedProcess[str]:
        """The exec plugin run as kubectl runs it (command, args, env, KUBERNETES_EXEC_INFO);
        `python_options` go before the interpreter's own (`-X importtime`)."""
        user = yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]["exec"]
        env = {
            **self.step_env(),
            **{e["name"]: e["value"] for e in user.get("env") or []},
            "KUBERNETES_EXEC_INFO": EXEC_INFO,
        }
        return subprocess.run(
            [user["command"], *python_options, *user["args"]],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def caches(self) -> list[Path]:
        return sorted(self.run_dir.glob("kube-token-*.json"))

    def cache(self) -> Path:
        [path] = self.caches()
        return path

    def entra_requests(self) -> int:
        return len(self.sandbox.log.select(service="entra", method="POST"))

    def github_requests(self) -> int:
        return len(self.sandbox.log.select(service="github"))


@pytest.fixture
def prepared(sandbox: Sandbox, actions_step: Step, tmp_path: Path) -> Prepared:
    home = tmp_path / "home"
    home.mkdir()
    return Prepared(sandbox, actions_step(sandbox, "prepare", env=AKS), home)


def listed_namespaces(done: subprocess.CompletedProcess[str]) -> set[str]:
    assert done.returncode == 0, done.stderr
    return {line.split()[0] for line in done.stdout.splitlines()[1:]}


def kube_callers(sandbox: Sandbox) -> set[tuple[int, str]]:
    return {(e.status, e.who) for e in sandbox.log.select(service="kube")}


def write_cache(path: Path, token: str, expires_on: float, fetched_at: float) -> None:
    path.write_text(
        json.dumps({"token": token, "expires_on": int(expires_on), "fetched_at": fetched_at})
    )


# ---------------------------------------------------------------------------- one token, shared


def test_ten_kubectl_calls_make_one_entra_and_one_github_request(prepared: Prepared) -> None:
    for _ in range(10):
        assert {"default", "kube-system"} <= listed_namespaces(prepared.kubectl("get", "ns"))

    assert prepared.entra_requests() == 1
    assert prepared.github_requests() == 1
    kube = prepared.sandbox.log.select(service="kube")
    assert len(kube) >= 10 and kube_callers(prepared.sandbox) == {(200, CLIENT)}


def test_the_cache_is_0600_in_the_run_folder_recorded_and_gone_after_cleanup(
    prepared: Prepared, sandbox: Sandbox, actions_step: Step
) -> None:
    assert prepared.caches() == []
    listed_namespaces(prepared.kubectl("get", "ns"))

    cache = prepared.cache()
    assert cache.parent == prepared.run_dir
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    recorded = (prepared.run_dir / ".azpytest-credentials").read_text().splitlines()
    assert cache.name in recorded

    done = actions_step(sandbox, "cleanup", env={"AZPYTEST_RUN_DIR": str(prepared.run_dir)})

    assert done.returncode == 0, done.stdout + done.stderr
    assert not cache.exists()
    assert f"azpytest: cleanup of {prepared.run_dir}: removed kubeconfig, {cache.name};" in (
        done.stdout
    )


def test_a_cached_token_near_its_expiry_is_replaced(prepared: Prepared) -> None:
    listed_namespaces(prepared.kubectl("get", "ns"))
    cache = prepared.cache()
    fresh = json.loads(cache.read_text())
    # An hour-long token fetched 59.5 minutes ago: 30 s left, inside the renewal margin. Were
    # it used, the API server would refuse it (it is not a token the sandbox issued).
    now = time.time()
    write_cache(cache, "near-expiry-token", now + 30, now - 3570)

    assert {"default"} <= listed_namespaces(prepared.kubectl("get", "ns"))

    assert prepared.entra_requests() == 2
    assert kube_callers(prepared.sandbox) == {(200, CLIENT)}
    renewed = json.loads(cache.read_text())
    assert renewed["token"] not in ("near-expiry-token", fresh["token"])
    assert renewed["expires_on"] > now + 600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_a_token_with_time_left_is_kept(prepared: Prepared) -> None:
    """The converse: the same token with most of its life left is handed on unchanged."""
    listed_namespaces(prepared.kubectl("get", "ns"))
    token = json.loads(prepared.cache().read_text())["token"]

    answer = prepared.plugin()

    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["status"]["token"] == token
    assert prepared.entra_requests() == 1


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{not json", b"\xff\xfe\x00binary", b'{"token": 3}', b"[1, 2]", b'"a string"'],
    ids=["empty", "not-json", "binary", "wrong-fields", "a-list", "a-string"],
)
def test_a_corrupt_cache_file_is_replaced_not_a_crash(prepared: Prepared, garbage: bytes) -> None:
    listed_namespaces(prepared.kubectl("get", "ns"))
    cache = prepared.cache()
    cache.write_bytes(garbage)
    cache.chmod(0o644)  # widened by someone: made 0600 again when it is rewritten

    done = prepared.kubectl("get", "ns")

    assert {"default"} <= listed_namespaces(done)
    assert "Traceback" not in done.stderr
    assert prepared.entra_requests() == 2
    assert json.loads(cache.read_text())["token"].startswith("eyJ")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_eight_kubectl_calls_at_once_all_succeed_with_one_entra_request(
    prepared: Prepared,
) -> None:
    env = prepared.step_env()
    running = [
        subprocess.Popen(
            prepared.kubectl_command("get", "ns", "-o", "name"),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in running]

    assert [code for code, _, _ in outcomes] == [0] * 8, outcomes
    assert all("namespace/kube-system" in out.splitlines() for _, out, _ in outcomes)
    assert prepared.entra_requests() == 1
    assert prepared.github_requests() == 1
    assert len(prepared.caches()) == 1


# ---------------------------------------------------------------------------- what kubectl reads


def test_the_plugin_prints_the_exec_credential_and_nothing_else(prepared: Prepared) -> None:
    # From Entra (no cache yet), then from the cache: the same bytes but for nothing.
    answers = [prepared.plugin(), prepared.plugin()]

    tokens = []
    for answer in answers:
        assert answer.returncode == 0, answer.stderr
        assert answer.stderr == ""
        [line] = answer.stdout.splitlines()
        credential = json.loads(line)
        assert set(credential) == {"kind", "apiVersion", "spec", "status"}
        assert (credential["kind"], credential["apiVersion"]) == (
            "ExecCredential",
            "client.authentication.k8s.io/v1",
        )
        assert set(credential["status"]) == {"token", "expirationTimestamp"}
        token = credential["status"]["token"]
        assert answer.stdout.count(token) == 1
        tokens.append(token)
    assert tokens[0] == tokens[1]
    assert prepared.entra_requests() == 1
    # kubectl shows none of it.
    done = prepared.kubectl("get", "ns")
    assert tokens[0] not in done.stdout + done.stderr


def test_a_cached_answer_imports_no_azure_sdk(prepared: Prepared) -> None:
    listed_namespaces(prepared.kubectl("get", "ns"))  # the cache filled

    answer = prepared.plugin("-X", "importtime")

    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["kind"] == "ExecCredential"
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in answer.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "azpytest.kubetoken" in imported
    heavy = ("azure", "msal", "requests", "urllib3", "yaml", "kubernetes", "cryptography")
    assert sorted(m for m in imported if m.split(".")[0] in heavy) == []
    assert prepared.entra_requests() == 1


def test_the_kubelogin_stand_in_shares_one_token_across_kubectl_calls(prepared: Prepared) -> None:
    # The user as ARM returns it (exec: kubelogin get-token ...), the stand-in first on PATH,
    # as `run` and `exec` put it for the tests.
    bin_dir = install_kubelogin(RunDir(prepared.run_dir), "always", {})
    assert bin_dir is not None
    config = yaml.safe_load(prepared.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "kubelogin",
            "args": ARM_KUBELOGIN_ARGS,
            "provideClusterInfo": False,
        }
    }
    arm_style = prepared.kubeconfig.with_name("arm-kubeconfig")
    arm_style.write_text(yaml.safe_dump(config))
    env = {**prepared.step_env(), "PATH": f"{bin_dir}:/usr/bin:/bin"}

    for _ in range(5):
        done = subprocess.run(
            [str(KUBECTL), "--request-timeout=20s", f"--kubeconfig={arm_style}", "get", "ns"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert {"default", "kube-system"} <= listed_namespaces(done)

    assert prepared.entra_requests() == 1
    assert prepared.github_requests() == 1
    assert len(prepared.caches()) == 1
    assert kube_callers(prepared.sandbox) == {(200, CLIENT)}


# ---------------------------------------------------------------------------- under azpytest run

SUITE = """
import json
import os
import subprocess

import yaml


def kubectl(*args):
    return subprocess.run(
        ["kubectl", "--request-timeout=20s", *args],
        capture_output=True, text=True, timeout=90, check=True,
    ).stdout


def test_kubectl_three_times():
    for _ in range(3):
        assert "namespace/kube-system" in kubectl("get", "ns", "-o", "name").splitlines()


def test_azpytest_fixtures_read_their_inputs_beside_the_broker_variables(azure_token):
    # The broker's endpoint for kube-token is no input's variable (AZPYTEST_BROKER is one).
    assert azure_token("https://vault.azure.net/.default")


def test_the_plugin_imports_no_azure_sdk_to_ask_the_broker():
    user = yaml.safe_load(open(os.environ["KUBECONFIG"]))["users"][0]["user"]["exec"]
    env = {**os.environ, **{e["name"]: e["value"] for e in user["env"]}}
    answer = subprocess.run(
        [user["command"], "-X", "importtime", *user["args"]],
        env=env, capture_output=True, text=True, timeout=90, check=True,
    )
    credential = json.loads(answer.stdout)
    assert credential["kind"] == "ExecCredential"
    with open(os.environ["TOKEN_OUT"], "w") as out:  # for the test that ran this suite
        out.write(credential["status"]["token"])
    imported = {line.rsplit("|", 1)[1].strip() for line in answer.stderr.splitlines()
                if line.startswith("import time:")}
    heavy = ("azure", "msal", "requests", "urllib3", "yaml", "kubernetes", "ssl", "http")
    assert sorted(m for m in imported if m.split(".")[0] in heavy) == []
"""


def test_under_run_kubectl_asks_the_broker_and_writes_no_cache(
    prepared: Prepared, sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_kubectl.py").write_text(textwrap.dedent(SUITE))
    env = {
        **prepared.result.env_file,
        "AZPYTEST_WORKING_DIRECTORY": str(project),
        "HOME": str(prepared.home),
        "TOKEN_OUT": str(tmp_path / "token"),
    }

    result = actions_step(sandbox, "run", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert prepared.caches() == []
    audit = [
        json.loads(line) for line in (prepared.run_dir / "audit.jsonl").read_text().splitlines()
    ]
    served = Counter((e["resource"], e["outcome"]) for e in audit if e.get("source") == "broker")
    assert served[(AKS_SERVER_APP, "fresh")] == 1
    assert served[(AKS_SERVER_APP, "cached")] == 3
    assert sum(served.values()) == 4 + served[("https://vault.azure.net", "fresh")]
    assert prepared.entra_requests() == 2  # the AKS server app's token and the vault's
    assert kube_callers(sandbox) == {(200, CLIENT)}
    # The token the plugin handed out was masked (through run's mask channel) before the
    # test process printed anything after it.
    token = (tmp_path / "token").read_text()
    assert f"::add-mask::{token}" in result.stdout.splitlines()

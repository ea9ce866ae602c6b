"""The leak matrix (issue 13): canary secrets of every shape, used every way a suite uses
them, searched for in every output the action's steps leave.

The whole flow runs as a job runs it, in CI mode against the sandbox: `prepare` reads the
canaries from Key Vault, `run` runs a suite that uses them (and the token fixtures and the
broker), `report` writes the summary, annotations and outputs, `cleanup` ends it; then a
merge job (`report --merge`, no secret and no mask known) merges the JUnit file the job would
upload. Twice: once with fd capture, `-l` and `junit_logging=all`, once with `-s` and live
logging.

Searched, for each canary and each token the job masked: every stretch of 8 characters
(masking.MIN_FRAGMENT) as written raw, JSON-, XML-, repr-, unicode-escaped, URL-quoted and in
base64, in: the log after an emulation of the runner's masker applied in order (a mask
counts only from the line after it), annotations (their titles are never masked), the job
summary, every GITHUB_OUTPUT, the JUnit file, the artifacts (contents and paths), the
durations file, the audit log, `.pytest_cache`, and the merge job's summary, outputs and
merged JUnit. Expected: none. The 3-character canary has no 8-character stretch: it is
searched whole, in the log only (files keep values under 4 characters: masking.MIN_SCRUBBED).
"""

from __future__ import annotations

import base64
import html
import json
import random
import shutil
import string
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from azpytest_sandbox import Sandbox

Step = Callable[..., Any]
FRAGMENT = 8
TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CLIENT = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
SUBSCRIPTION = "c0ffee00-1234-4abc-8def-0123456789ab"


def _pem() -> str:
    rng = random.Random(13)
    body = "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(4000))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----"


# Key Vault name -> (environment variable, value)
CANARIES: dict[str, tuple[str, str]] = {
    "canary-json": ("CANARY_JSON", '{"user": "svc-reader", "key": "LEAK-json-9f8e7d6c"}'),
    "canary-pem": ("CANARY_PEM", _pem()),
    "canary-multi": ("CANARY_MULTI", "first %25 line 'quoted' LEAK\nsecond-line-LEAK-%41"),
    "canary-unicode": ("CANARY_UNICODE", "grüße\\Köln-LEAK-ünïcödé"),
    "canary-token": ("CANARY_TOKEN", "tok" + "Zq8" * 19),
    # Its scheme is not a common one: "https://" is public text, in every log.
    "canary-url": ("CANARY_URL", "rediss://:LEAK-pw@cache.example.net:6380/0?sig=3c4d&sv=2024"),
    "canary-short": ("CANARY_SHORT", "Qz7"),
    "canary-word": ("CANARY_WORD", "Welcome-to-the-LEAK-canary-77"),
}
SHORT = "Qz7"

CONFTEST = """
    import os

    import pytest

    NAMES = {names!r}


    @pytest.fixture
    def broken():
        raise RuntimeError("cannot connect: " + " | ".join(os.environ[n] for n in NAMES))
"""

SUITE = """
    import logging
    import os
    from pathlib import Path

    import pytest

    NAMES = {names!r}
    VALUES = [os.environ[n] for n in NAMES]
    log = logging.getLogger("suite")


    @pytest.mark.parametrize("name", NAMES)
    def test_assert_equal(name):
        value = os.environ[name]
        assert value == "not it"


    def test_long_dict():
        assert {{n: os.environ[n] for n in NAMES}} == {{}}


    def test_long_list():
        assert VALUES == []


    def test_fixture_raises(broken):
        pass


    def test_print_and_log_every_level():
        for value in VALUES:
            print("value:", value)
            for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
                log.log(level, "value %s", value)
            log.critical("value %r", value)
        assert False, "see the output"


    @pytest.mark.parametrize("value", VALUES)
    def test_generated_id(value):
        assert not value


    @pytest.mark.parametrize("value", VALUES, ids=["id-" + v for v in VALUES])
    def test_explicit_id(value):
        assert not value


    @pytest.mark.parametrize("name", NAMES)
    def test_skip_reason(name):
        pytest.skip(os.environ[name] + " unreachable")


    @pytest.mark.parametrize("name", NAMES)
    def test_xfail_reason(name):
        pytest.xfail("known: " + os.environ[name])


    @pytest.mark.xfail(reason="marker: " + VALUES[0])
    def test_xfail_marker():
        assert False


    @pytest.mark.parametrize("name", NAMES)
    def test_pytest_fail(name):
        pytest.fail("refused " + os.environ[name])


    def test_locals():
        everything = "\\n".join(VALUES)
        assert not everything


    def test_files_in_the_artifacts_folder(artifact_collector):
        artifact_collector.collect("dump.txt", "\\n".join(VALUES))
        folder = Path(os.environ["AZPYTEST_RUN_DIR"]) / "artifacts" / "written-by-the-test"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "all.txt").write_text("\\n".join(VALUES))
        (folder / (os.environ["CANARY_TOKEN"] + ".txt")).write_text("named after a value")
        assert False


    def keep(token):
        # For the matrix only: the tokens the suite got, to search for whether masked or not.
        with open(os.environ["LEAK_MATRIX_TOKENS"], "a") as handle:
            handle.write(token + "\\n")


    def test_token_fixtures(azure_token):
        token = azure_token("https://vault.azure.net/.default")
        keep(token)
        print("token:", token)
        log.error("token %s", token)
        assert token == "not it"


    def test_broker_token():
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])
        token = credential.get_token("https://management.azure.com/.default").token
        keep(token)
        assert token == "not it", "the broker gave " + token


    def test_kubectl_and_its_token():
        import json
        import subprocess

        import yaml

        listed = subprocess.run(["kubectl", "get", "ns", "-o", "name"], capture_output=True,
                                text=True, timeout=90, check=True)
        assert "namespace/default" in listed.stdout.split()
        # The token kubectl's exec plugin hands it, asked the way kubectl asks.
        user = yaml.safe_load(open(os.environ["KUBECONFIG"]))["users"][0]["user"]["exec"]
        env = {{**os.environ, **{{e["name"]: e["value"] for e in user.get("env") or []}}}}
        answer = subprocess.run([user["command"], *user["args"]], env=env, capture_output=True,
                                text=True, timeout=90, check=True)
        token = json.loads(answer.stdout)["status"]["token"]
        keep(token)
        print("kube token:", token)
        assert token == "not it", "kubectl got " + token
"""
USAGES = [
    "assert ==",
    "long dict repr",
    "long list repr",
    "exception in a fixture",
    "print",
    "logging at every level",
    "generated parametrize id",
    "explicit parametrize id",
    "skip reason",
    "xfail reason",
    "xfail marker reason",
    "pytest.fail",
    "-l locals",
    "artifact_collector file",
    "file written into the artifacts folder (contents and name)",
    "token fixture printed, logged and in a failure",
    "broker token in a failure message",
    "kubectl's exec-plugin token printed and in a failure",
]
RUNS = {
    "fd capture, -l, junit_logging=all": (
        "-l -o junit_logging=all -o log_level=DEBUG --tb=long -rA"
    ),
    "-s, live logging": "-s -o log_cli=true -o log_cli_level=DEBUG -o log_level=DEBUG -rA",
    # Two shards (two jobs, each its own prepare/run/report/cleanup) with xdist workers in
    # each; the merge job merges both shards' JUnit.
    "2 shards, xdist": "--numprocesses=2 -l -o junit_logging=all -o log_level=DEBUG -rA",
}
SHARDS = {"2 shards, xdist": 2}
OUTPUTS = [
    "log (runner's masker, in order)",
    "annotations",
    "job summary",
    "GITHUB_OUTPUT",
    "JUnit",
    "artifacts (contents)",
    "artifacts (paths)",
    "durations",
    "audit log",
    ".pytest_cache",
    "merge job: summary",
    "merge job: outputs",
    "merge job: merged JUnit",
]


def world() -> dict[str, Any]:
    return {
        "tenants": [
            {
                "id": TENANT,
                "name": "contoso",
                "apps": [
                    {
                        "name": "azpytest-ci",
                        "client_id": CLIENT,
                        "object_id": "b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e",
                        "federated_credentials": [
                            {"subject": "repo:octo-org/octo-repo:ref:refs/heads/main"}
                        ],
                    }
                ],
            }
        ],
        "vaults": [
            {
                "name": "kv-app",
                "secrets": {name: value for name, (_, value) in CANARIES.items()},
                "grants": [{"principal": "azpytest-ci"}],
            }
        ],
        "subscriptions": [
            {
                "id": SUBSCRIPTION,
                "name": "leak-matrix",
                "resource_groups": [
                    {"name": "rg-app", "location": "eastus", "clusters": [{"name": "aks-app"}]}
                ],
                "grants": [
                    {
                        "principal": "azpytest-ci",
                        "role": "Azure Kubernetes Service Cluster User Role",
                    }
                ],
            }
        ],
    }


# ---------------------------------------------------------------------------- the search


def _escapings() -> list[Callable[[str], str]]:
    """Per-character ways a file or a renderer writes a value (independent of masking.py)."""
    return [
        lambda c: c,
        lambda c: json.dumps(c)[1:-1],
        lambda c: json.dumps(c, ensure_ascii=False)[1:-1],
        lambda c: repr(c + '"')[1:-2],
        lambda c: ascii(c + '"')[1:-2],
        lambda c: c.encode("unicode_escape").decode("ascii"),
        lambda c: html.escape(c, quote=False),
        lambda c: html.escape(c).replace("&#x27;", "&apos;"),
        lambda c: html.escape(c).replace("\n", "&#10;"),
        lambda c: quote(c, safe=""),
        quote_plus,
    ]


def fragments(value: str) -> set[str]:
    """Every stretch of FRAGMENT characters of `value` in each form (mostly-blank stretches,
    which say nothing, left out), and of its base64 at each alignment."""
    found: set[str] = set()
    starts = [
        i
        for i in range(len(value) - FRAGMENT + 1)
        if sum(not c.isspace() for c in value[i : i + FRAGMENT]) >= FRAGMENT // 2
    ]
    for escape in _escapings():
        written = [escape(c) for c in value]
        found.update("".join(written[i : i + FRAGMENT]) for i in starts)
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + value.encode()).decode()[4 if offset else 0 :]
        found.update(encoded[i : i + FRAGMENT] for i in range(len(encoded) - FRAGMENT + 1))
    return found


@dataclass
class Search:
    secrets: dict[str, str]  # label -> value
    patterns: dict[str, set[str]] = field(default_factory=dict)
    found: list[tuple[str, str, str]] = field(default_factory=list)  # (output, secret, fragment)
    searched: int = 0

    def __post_init__(self) -> None:
        self.patterns = {label: fragments(v) for label, v in self.secrets.items()}

    def look(self, output: str, texts: Iterable[str]) -> None:
        text = "\n".join(texts)
        for label, patterns in self.patterns.items():
            self.searched += 1
            hits = sorted(p for p in patterns if p in text)
            self.found += [(output, label, hit) for hit in hits[:3]]
            for hit in hits[:1]:
                line = next(t for t in text.splitlines() if hit in t)
                print(f"LEAK {output} {label}: {line[:300]!r}")


def runner_log(streams: Iterable[str]) -> tuple[list[str], list[str]]:
    """Each step's output as the runner's masker shows it: `::add-mask::` lines register
    masks (escaped as workflow data) that hide later lines only; and the masks."""
    masks: list[str] = []
    shown: list[str] = []
    for stream in streams:
        for line in stream.splitlines():
            if line.startswith("::add-mask::"):
                data = line.removeprefix("::add-mask::")
                masks.append(data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%"))
                continue
            for mask in sorted(masks, key=len, reverse=True):
                line = line.replace(mask, "***")
            shown.append(line)
    return shown, masks


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def read(paths: Iterable[Path]) -> list[str]:
    return [p.read_text(errors="replace") for p in paths]


# ---------------------------------------------------------------------------- the flow


def job(
    tmp_path: Path, sandbox: Sandbox, actions_step: Step, pytest_args: str, shards: int = 1
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """One job per shard: prepare, run, report, cleanup; then the merge job over the shards'
    JUnit. The masks the jobs registered, the tokens the suite got, and each output's texts."""
    names = [env for env, _ in CANARIES.values()]
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "tests" / "conftest.py").write_text(textwrap.dedent(CONFTEST.format(names=names)))
    (root / "tests" / "test_canaries.py").write_text(textwrap.dedent(SUITE.format(names=names)))
    mapping = "\n".join(f"{env}: {name}" for name, (env, _) in CANARIES.items())
    kept = tmp_path / "tokens-the-suite-got"
    uploaded = tmp_path / "uploaded"  # what the action's upload step takes, before cleanup
    uploaded.mkdir()
    steps: list[Any] = []
    run_dirs: list[Path] = []
    for shard in range(shards):
        prepared = actions_step(
            sandbox,
            "prepare",
            env={
                "AZPYTEST_KEY_VAULT": "kv-app",
                "AZPYTEST_SECRETS": mapping,
                "AZPYTEST_SUBSCRIPTION_ID": SUBSCRIPTION,
                "AZPYTEST_AKS_RESOURCE_GROUP": "rg-app",
                "AZPYTEST_AKS_CLUSTER": "aks-app",
            },
        )
        assert prepared.returncode == 0, prepared.stderr + prepared.stdout
        env = {**prepared.env_file, "AZPYTEST_WORKING_DIRECTORY": str(root)}
        sharding = (
            {"AZPYTEST_SHARD_COUNT": str(shards), "AZPYTEST_SHARD_INDEX": str(shard)}
            if shards > 1
            else {}
        )
        ran = actions_step(
            sandbox,
            "run",
            env={
                **env,
                **sharding,
                "AZPYTEST_PYTEST_ARGS": pytest_args,
                "AZPYTEST_DEFER_TEST_FAILURE": "true",
                "LEAK_MATRIX_TOKENS": str(kept),
            },
            timeout=300,
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        run_dir = Path(prepared.env_file["AZPYTEST_RUN_DIR"])
        reported = actions_step(sandbox, "report", env=env)
        assert reported.returncode in (0, 1), reported.stdout[-3000:] + reported.stderr[-3000:]
        shutil.copy(run_dir / "junit.xml", uploaded / f"junit-{shard}.xml")
        cleaned = actions_step(sandbox, "cleanup", env=env)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        steps += [prepared, ran, reported, cleaned]
        run_dirs.append(run_dir)
    merged_junit = tmp_path / "merged.xml"
    merge = actions_step(
        None, "report", "--merge", str(merged_junit), *map(str, sorted(uploaded.iterdir()))
    )
    assert merge.returncode in (0, 1), merge.stdout + merge.stderr

    # The runner reads a step's stderr beside its stdout: counted first, before its masks.
    # Each shard is a job of its own: its masks hide nothing in another's log.
    shown: list[str] = []
    masks: list[str] = []
    for first in range(0, len(steps), 4):
        job_steps = steps[first : first + 4]
        job_shown, job_masks = runner_log(
            s for step in job_steps for s in (step.stderr, step.stdout)
        )
        shown += job_shown
        masks += job_masks
    lines = [line for step in steps for line in step.stdout.splitlines()]
    assert not [line for line in lines if "::add-mask::" in line[1:]], "a mask mid-line"
    assert SHORT not in "\n".join(shown), "the 3-character canary in the log"
    artifacts = [p for d in run_dirs for p in files_under(d / "artifacts")]
    assert artifacts, "no failure artifacts were written"
    outputs = {
        "log (runner's masker, in order)": shown,
        # Annotation titles are never masked: the raw command lines.
        "annotations": [line for line in lines if line.startswith(("::error", "::warning"))],
        "job summary": [step.summary for step in steps],
        "GITHUB_OUTPUT": [json.dumps(step.outputs) for step in steps],
        "JUnit": read(sorted(uploaded.iterdir())),
        "artifacts (contents)": read(artifacts),
        "artifacts (paths)": [str(p) for p in artifacts],
        "durations": read(p for d in run_dirs for p in d.glob("durations-*.json")),
        "audit log": read(d / "audit.jsonl" for d in run_dirs),
        ".pytest_cache": read(files_under(root / ".pytest_cache")),
        "merge job: summary": [merge.summary, merge.stdout, merge.stderr],
        "merge job: outputs": [json.dumps(merge.outputs)],
        "merge job: merged JUnit": read([merged_junit]),
    }
    assert list(outputs) == OUTPUTS
    return masks, kept.read_text().split(), outputs


@pytest.mark.parametrize("how", list(RUNS), ids=["fd-capture", "dash-s", "shards-xdist"])
def test_no_canary_or_token_leaves_the_job(
    tmp_path: Path, make_sandbox: Callable[..., Sandbox], actions_step: Step, how: str
) -> None:
    shards = SHARDS.get(how, 1)
    masks, got, outputs = job(tmp_path, make_sandbox(world()), actions_step, RUNS[how], shards)
    # Every token the suite got (the fixture's, the broker's) was masked in the log, at the
    # start of a line, before its first use.
    assert len(got) == 3  # the token fixture's, the broker's, kubectl's
    assert set(got) <= set(masks)
    tokens = sorted({m for m in masks if m.startswith("eyJ")} | set(got))
    assert len(tokens) >= 3  # and the GitHub assertions
    secrets = {env: value for env, value in CANARIES.values() if len(value) >= FRAGMENT}
    secrets.update({f"token-{i}": token for i, token in enumerate(tokens)})
    search = Search(secrets)
    for output, texts in outputs.items():
        search.look(output, texts)
    size = len(CANARIES) * len(USAGES) * len(OUTPUTS)
    print(
        f"leak matrix ({how}): {len(CANARIES)} canaries x {len(USAGES)} usages x "
        f"{len(OUTPUTS)} outputs = {size} cells, plus {len(tokens)} tokens; "
        f"{search.searched} searches; fragments found: {len(search.found)}"
    )
    assert search.found == [], search.found

"""What one act run left, for the end-to-end tests: act's output parsed, the workflow's
outputs, the stand-in artifact store; and the example project's constants."""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from azpytest_sandbox import Sandbox

# Distinctive values, so a leak anywhere is found by a plain substring search.
API_KEY = "e2e-ApiKey-Zebra7f3c9a1d42-neverShown"
PG_PASSWORD = "e2e-PgPass-Quokka52b8e06b-neverShown"
SECRET_VALUES = (API_KEY, PG_PASSWORD)

TENANT = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"
CLIENT = "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b"
SUBSCRIPTION = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
REPOSITORY = "octo-org/octo-repo"
MAIN = f"repo:{REPOSITORY}:ref:refs/heads/main"


@dataclass
class ActRun:
    """One act run: its whole output, parsed, and what the workflow left for the test."""

    returncode: int
    output: str  # act's stdout and stderr, as printed
    records: list[dict[str, Any]]  # the JSON log records, in order
    out: Path  # what the workflows' probe steps wrote (AZPYTEST_E2E_OUT)
    store: Path  # the stand-in artifact store (AZPYTEST_E2E_ARTIFACTS)
    repo: Path  # the user's repository act ran in
    sandbox: Sandbox

    def call(self, caller: str) -> ActRun:
        """The records of one call of a reusable workflow, by the calling job's id (act
        names its jobs `<caller>/<workflow>/<job>`), to read with the methods below."""
        records = [r for r in self.records if str(r.get("job", "")).startswith(f"{caller}/")]
        return replace(self, records=records)

    def jobs(self) -> dict[str, str]:
        """Job -> result (success/failure), a matrix job under its name and matrix values."""
        results = {}
        for record in self.records:
            if "jobResult" in record:
                results[self.job_name(record)] = record["jobResult"]
        return results

    @staticmethod
    def job_name(record: dict[str, Any]) -> str:
        matrix = record.get("matrix") or {}
        suffix = "".join(f" ({k}={v})" for k, v in sorted(matrix.items()))
        return f"{record.get('jobID', '?')}{suffix}"

    def of(self, job: str | None) -> list[dict[str, Any]]:
        if job is None:
            return self.records
        return [r for r in self.records if self.job_name(r) == job]

    def lines(self, job: str | None = None) -> list[str]:
        """The log as a person reads it: each record's message, masked values shown as ***."""
        text = "".join(
            r["msg"] if r.get("raw_output") else r.get("msg", "") + "\n" for r in self.of(job)
        )
        return text.splitlines()

    def steps(self, job: str) -> list[tuple[str, str]]:
        """(result, step) for every step of a job that finished, in order: the action's own
        steps appear as `Main <name>`, the action as a whole after them."""
        found = []
        for record in self.of(job):
            if "stepResult" in record:
                name = record["msg"].split(" - ", 1)[1].rsplit(" [", 1)[0]
                found.append((record["stepResult"], name))
        return found

    def step_outputs(self, job: str, step_id: str) -> dict[str, str]:
        """`steps.<step_id>.outputs` of a job (for an action: its `outputs:`), as act
        recorded them."""
        values = {}
        for record in self.of(job):
            if record.get("command") == "set-output" and record.get("stepID") == [step_id]:
                values[record["name"]] = record["arg"]
        return values

    def commands(self, name: str, job: str | None = None) -> list[dict[str, Any]]:
        """Workflow commands (error, warning, set-output, summary, ...) of a job, or all."""
        return [r for r in self.of(job) if r.get("command") == name]

    def annotations(self, level: str = "error", job: str | None = None) -> list[str]:
        """`::error file=F,line=N,title=T::message` as the runner received them."""
        return [r["raw"].rstrip("\n") for r in self.commands(level, job)]

    def summary(self, job: str | None = None) -> str:
        return "".join(r.get("content", "") for r in self.commands("summary", job))

    def outputs(self) -> dict[str, str]:
        return json.loads((self.out / "outputs.json").read_text())  # type: ignore[no-any-return]

    def uploaded(self, run_id: str = "1") -> dict[str, Path]:
        """Artifact name -> its folder, for the artifacts of run `run_id` (act's is 1)."""
        run = self.store / run_id
        return {p.name: p for p in sorted(run.iterdir())} if run.is_dir() else {}

    def shown(self) -> str:
        """Everything act printed except what must hold the values: the `::add-mask::`
        registrations and the GITHUB_ENV lines (act's JSON log repeats both in clear)."""
        kept = []
        for line in self.output.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                kept.append(line)
                continue
            if isinstance(record, dict) and record.get("command") in ("add-mask", "set-env"):
                record = {k: v for k, v in record.items() if k not in ("arg", "raw")}
            kept.append(json.dumps(record, ensure_ascii=False))
        return "\n".join(kept)

    def explain(self) -> str:
        """For assertion messages: the log's last lines."""
        return "\n".join(self.lines()[-120:])


def files_text(*roots: Path) -> dict[Path, str]:
    """Every file under `roots`, read as text (bytes that are not UTF-8 replaced)."""
    found = {}
    for root in roots:
        if root.is_file():
            found[root] = root.read_text(errors="replace")
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    found[path] = path.read_text(errors="replace")
    return found


def assert_no_secret(run: ActRun, *roots: Path) -> None:
    """No Key Vault value in act's output, the summaries, the outputs or any file under
    `roots` (uploaded artifacts, what the job left behind)."""
    places = {"act's output": run.shown(), **{str(p): t for p, t in files_text(*roots).items()}}
    for value in SECRET_VALUES:
        leaks = [where for where, text in places.items() if value in text]
        assert not leaks, f"the Key Vault value {value!r} shows in {leaks}"


def junit_cases(path: Path) -> dict[str, str]:
    """Node id -> outcome (passed, failure, error, skipped) of a JUnit file pytest wrote,
    for a project of test modules without classes (the example's)."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = tag
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        assert node not in cases, f"{node} ran twice in {path}"
        cases[node] = outcome
    return cases


# ---------------------------------------------------------------------------- running act

CHECKOUT = Path(__file__).resolve().parents[2]
# The sandbox variables a job needs; AZURE_* go in as repository variables instead.
SANDBOX_ENV = (
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
)
ID_TOKEN_ENV = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
# What act itself and the runner's tools need from this process's environment: the rest
# (AZURE_*, GITHUB_*, proxies, this venv on PATH) would leak into the jobs.
HOST_ENV = ("HOME", "LANG", "LC_ALL", "USER", "TMPDIR", "TERM")
HOST_ENV_PREFIXES = ("UV_", "PIP_")


def pinned(action: str) -> str:
    """The commit SHA that action.yml and the reusable workflow pin `action` to (act fetches
    a composite action's actions before the job, even those of skipped steps)."""
    texts = [
        (CHECKOUT / "action.yml").read_text(),
        (CHECKOUT / ".github" / "workflows" / "pytest-azure.yml").read_text(),
    ]
    # `actions/cache/restore@<sha>`: an action in a folder of the repository counts too.
    found = rf"{action}(?:/[\w-]+)?@([0-9a-f]{{40}})"
    shas = {m for text in texts for m in re.findall(found, text)}
    assert len(shas) == 1, f"{action} is pinned to {sorted(shas)}: one SHA expected"
    return str(shas.pop())


def host_env() -> dict[str, str]:
    """act's own environment: this process's, less what would leak into the jobs."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env = {k: v for k, v in os.environ.items() if k in HOST_ENV or k.startswith(HOST_ENV_PREFIXES)}
    env["PATH"] = path
    return env

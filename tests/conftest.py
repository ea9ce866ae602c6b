"""Fixtures every test layer shares: the sandbox (stand-ins of the remote services)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from azpytest.github import read_file_commands
from azpytest.rundir import TOKENS
from azpytest_sandbox import Sandbox, build_scenario

pytest_plugins = ["pytester"]


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes from scenario data (merged over the default world); all stop at the end."""
    started: list[Sandbox] = []

    def make(scenario: dict[str, Any] | None = None, **kwargs: Any) -> Sandbox:
        sandbox = Sandbox(build_scenario(scenario or {}), **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def use_sandbox(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sandbox], Sandbox]:
    """Point this process's environment at a sandbox, as a workflow step's would be."""

    def use(sandbox: Sandbox) -> Sandbox:
        for name in (
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_USERNAME",
            "IDENTITY_ENDPOINT",
            "MSI_ENDPOINT",
            "HTTP_PROXY",
            "http_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        return sandbox

    return use


@pytest.fixture
def sandbox_env(sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox]) -> Sandbox:
    """The default sandbox, with this process's environment pointed at it."""
    return use_sandbox(sandbox)


@dataclass
class StepResult:
    """What one `python -m azpytest ...` step left behind, as the runner would see it."""

    returncode: int
    stdout: str
    stderr: str
    env_file: dict[str, str]
    outputs: dict[str, str]
    summary: str
    runner_temp: Path

    def commands(self, name: str) -> list[str]:
        """The data of every `::name ...::data` workflow command on stdout."""
        prefix = f"::{name}"
        return [
            line.split("::", 2)[2]
            for line in self.stdout.splitlines()
            if line.startswith(prefix + "::") or line.startswith(prefix + " ")
        ]

    def written(self) -> str:
        """Every byte the step wrote that a user or artifact could see, masks excepted, all
        but `run`'s record of the tokens it masked (0600, for the report step's scrubber;
        cleanup deletes it)."""
        files = [p for p in self.runner_temp.rglob("*") if p.is_file() and p.name != TOKENS]
        shown = [line for line in self.stdout.splitlines() if not line.startswith("::add-mask::")]
        return "\n".join(
            [*shown, self.stderr, self.summary, *(p.read_text(errors="replace") for p in files)]
        )


@pytest.fixture
def actions_step(tmp_path: Path) -> Callable[..., StepResult]:
    """Run `python -m azpytest ARGS` as a GitHub Actions step would, inside a sandbox."""
    counter = iter(range(1000))

    def run(
        sandbox: Sandbox | None,
        *args: str,
        env: dict[str, str] | None = None,
        actions: bool = True,
        timeout: float = 120,
    ) -> StepResult:
        step = tmp_path / f"step-{next(counter)}"
        runner_temp = step / "runner-temp"
        runner_temp.mkdir(parents=True)
        files = {
            name: step / name.lower()
            for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
        }
        for path in files.values():
            path.touch()
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "AZPYTEST_", "GITHUB_", "ACTIONS_", "RUNNER_"))
        }
        environ.update(sandbox.env if sandbox is not None else {})
        if actions:
            environ.update(
                {
                    "GITHUB_ACTIONS": "true",
                    "CI": "true",
                    "RUNNER_TEMP": str(runner_temp),
                    "GITHUB_RUN_ID": "12345678901",
                    "GITHUB_RUN_ATTEMPT": "1",
                    "GITHUB_JOB": "test",
                    "GITHUB_REPOSITORY": "octo-org/octo-repo",
                    "GITHUB_EVENT_NAME": "push",
                    "GITHUB_WORKSPACE": str(step),
                }
            )
            environ.update({k: str(v) for k, v in files.items()})
        else:
            environ["AZPYTEST_RUN_DIR"] = str(runner_temp / "azpytest" / "local")
        environ.update(env or {})
        result = subprocess.run(
            [sys.executable, "-m", "azpytest", *args],
            cwd=step,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return StepResult(
            returncode=result.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
            env_file=read_file_commands(files["GITHUB_ENV"]),
            outputs=read_file_commands(files["GITHUB_OUTPUT"]),
            summary=files["GITHUB_STEP_SUMMARY"].read_text(),
            runner_temp=runner_temp,
        )

    return run


@pytest.fixture
def az_cli() -> str:
    """The real az CLI: AZPYTEST_TEST_AZ, else the one `make bootstrap` installs in .azcli/.

    A missing az fails the test (it never skips): CI installs it through `make bootstrap`.
    """
    found = os.environ.get("AZPYTEST_TEST_AZ") or str(
        Path(__file__).resolve().parent.parent / ".azcli" / "bin" / "az"
    )
    if not os.access(found, os.X_OK):
        pytest.fail(f"the az CLI is not at {found}: run `make bootstrap` (it installs .azcli/)")
    return found

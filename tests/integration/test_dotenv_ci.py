""".env in CI (issue 15, item 5): a `.env` template's variables that change the tests'
credential chain (an empty AZURE_CLIENT_SECRET, a username, a token file) are not loaded in
GitHub Actions, with one warning naming them and never a value; the file's other variables
still are."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azpytest_sandbox import Sandbox

Step = Callable[..., Any]

VALUES = {
    "AZURE_CLIENT_SECRET": "",  # the template's empty secret
    "AZURE_CLIENT_CERTIFICATE_PATH": "/nonexistent/cert-value-7f3a.pem",
    "AZURE_FEDERATED_TOKEN_FILE": "/nonexistent/token-value-91bc",
    "AZURE_USERNAME": "someone-value-4d2e@example.com",
    "AZURE_PASSWORD": "password-value-c81f",
}
NAMES = ", ".join(VALUES)

SUITE = """
import os

from azure.identity import DefaultAzureCredential


def test_mine():
    assert [name for name in {names!r} if name in os.environ] == []
    token = DefaultAzureCredential().get_token("https://vault.azure.net/.default")
    assert token.token


def test_other():
    raise AssertionError("deselected by the .env's AZPYTEST_PYTEST_ARGS")
"""


def dotenv(folder: Path) -> Path:
    path = folder / "ci.env"
    lines = [f"{name}={value}" for name, value in VALUES.items()]
    path.write_text("\n".join([*lines, "AZPYTEST_PYTEST_ARGS=-k mine", ""]))
    return path


def warning(path: Path) -> str:
    return (
        f"{path} sets {NAMES}: not loaded in CI, where the tests' identity is the job's (GitHub "
        "OIDC); with them DefaultAzureCredential would try another credential first (an empty "
        "AZURE_CLIENT_SECRET fails). Local runs still load them."
    )


def shown(result: Any) -> str:
    return str(result.stdout + result.stderr + result.summary)


def test_run_in_ci_loads_no_credential_variable_from_dotenv_and_warns_once(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_suite.py").write_text(textwrap.dedent(SUITE.format(names=list(VALUES))))
    env_file = dotenv(tmp_path)

    result = actions_step(
        sandbox,
        "run",
        env={"AZPYTEST_ENV_FILE": str(env_file), "AZPYTEST_WORKING_DIRECTORY": str(project)},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 deselected" in result.stdout  # the file's other variable was loaded
    assert result.commands("warning") == [warning(env_file)]
    for value in VALUES.values():
        if value:
            assert value not in shown(result)


def test_prepare_in_ci_warns_once_naming_them(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    env_file = dotenv(tmp_path)

    result = actions_step(sandbox, "prepare", env={"AZPYTEST_ENV_FILE": str(env_file)})

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.commands("warning") == [warning(env_file)]
    for value in VALUES.values():
        if value:
            assert value not in shown(result)


CONFTEST = """
import os
from pathlib import Path

# What python-dotenv's load_dotenv() does: fill what is unset from the suite's .env.
for line in (Path(__file__).parent / ".env").read_text().splitlines():
    name, _, value = line.partition("=")
    os.environ.setdefault(name, value)
"""

TEMPLATE_SUITE = """
import os

from azure.identity import DefaultAzureCredential


def test_vault_token():
    token = DefaultAzureCredential().get_token("https://vault.azure.net/.default")
    assert token.token


def test_still_none():
    assert "AZURE_CLIENT_SECRET" not in os.environ
"""


def test_a_suite_that_loads_its_own_dotenv_template_still_uses_the_broker(
    sandbox: Sandbox, actions_step: Step, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("AZURE_CLIENT_SECRET=\nAZURE_USERNAME=someone-value-4d2e\n")
    (project / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (project / "test_suite.py").write_text(textwrap.dedent(TEMPLATE_SUITE))

    result = actions_step(sandbox, "run", env={"AZPYTEST_WORKING_DIRECTORY": str(project)})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    said = (
        "azpytest: warning: AZURE_CLIENT_SECRET, AZURE_USERNAME removed from the tests' "
        "environment, where the suite put them (a .env it loads?): in CI the tests' identity is "
        "the job's, through the token broker, and with them DefaultAzureCredential would try "
        "another credential first (an empty AZURE_CLIENT_SECRET fails). Set broker: false to "
        "keep them."
    )
    assert result.stdout.splitlines().count(said) == 1
    assert "someone-value-4d2e" not in shown(result)

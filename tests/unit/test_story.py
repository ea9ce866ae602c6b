"""README, action.yml and the code tell the same story: every input of the action reaches the
code under the name the CLI and settings use, and the README names it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from azpytest.settings import ALIASES, INPUT_ENV

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
README = (ROOT / "README.md").read_text()
# Inputs that steer the action itself rather than a `python -m azpytest` step.
ACTION_ONLY = {
    "fail-on-test-failure",
    "upload",
    "artifact-name",
    "python-version",
    "requirements",
    "merge",
}
OLD_NAMES = {old for old, _ in ALIASES.values()}


def env_of_steps() -> dict[str, str]:
    """AZPYTEST_* variable -> the expression the action sets it from."""
    found: dict[str, str] = {}
    for step in ACTION["runs"]["steps"]:
        for name, value in (step.get("env") or {}).items():
            found[name] = str(value)
    return found


def test_every_input_reaches_the_code_through_env() -> None:
    env = env_of_steps()
    for name in ACTION["inputs"]:
        if name in ACTION_ONLY:
            continue
        variable = "AZPYTEST_" + name.upper().replace("-", "_")
        assert env.get(variable) == f"${{{{ inputs.{name} }}}}", name
        known = {v for variables in INPUT_ENV.values() for v in variables} | {
            v for _, v in ALIASES.values()
        }
        assert variable in known, f"{variable} is set by action.yml but settings do not read it"


def test_every_setting_is_an_input_of_the_action() -> None:
    # The action chooses these itself (its run folder, no .env, its private interpreter).
    cli_only = {"run-dir", "env-file", "python"}
    assert set(INPUT_ENV) - cli_only <= set(ACTION["inputs"])


def test_the_readme_names_every_input_and_output() -> None:
    for name in [*ACTION["inputs"], *ACTION["outputs"]]:
        if name in OLD_NAMES:
            continue
        assert re.search(rf"`{re.escape(name)}`", README), f"README does not mention `{name}`"


def test_no_expression_inside_a_script() -> None:
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in str(step.get("run", "")), step.get("name")

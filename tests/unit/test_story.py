"""README, action.yml and the code tell the same story, from the one table of inputs
(azpytest.inputs): every input of the action reaches the code under the name the CLI and
settings use, every variable the code reads is an input, and the README names them all."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from azpytest.cli import build_parser
from azpytest.inputs import ACTION as ACTION_GROUP
from azpytest.inputs import BY_NAME, INPUTS, STEPS

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
README = (ROOT / "README.md").read_text()
OLD_NAMES = {spec.alias for spec in INPUTS if spec.alias}
SOURCE = ROOT / "scripts" / "azpytest"


def env_of_steps() -> dict[str, str]:
    """AZPYTEST_* variable -> the expression the action sets it from."""
    found: dict[str, str] = {}
    for step in ACTION["runs"]["steps"]:
        for name, value in (step.get("env") or {}).items():
            found[name] = str(value)
    return found


def test_the_action_has_exactly_the_inputs_of_the_table() -> None:
    table = {spec.name for spec in INPUTS if spec.action} | OLD_NAMES
    assert set(ACTION["inputs"]) == table


def test_every_input_reaches_the_code_through_env() -> None:
    env = env_of_steps()
    for name in ACTION["inputs"]:
        variable = "AZPYTEST_" + name.upper().replace("-", "_")
        if name in BY_NAME and BY_NAME[name].group == ACTION_GROUP and variable not in env:
            continue  # steers action.yml itself (`if:` and `with:` expressions)
        assert env.get(variable) == f"${{{{ inputs.{name} }}}}", name


def test_every_step_input_is_a_flag_of_its_commands() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, argparse.ArgumentParser] = subparsers.choices
    for spec in INPUTS:
        for step in spec.steps:
            if step == "report":
                continue  # its own parser (azpytest report --help)
            flags = {o for a in commands[step]._actions for o in a.option_strings}
            assert spec.flag in flags, (spec.name, step)


def test_every_azpytest_variable_the_code_reads_is_an_input() -> None:
    known = {v for spec in INPUTS for v in spec.variables}
    known |= {spec.alias_variable for spec in INPUTS if spec.alias_variable}
    # Set by the steps for each other (not inputs): the run folder and the exported profiles;
    # set by run/exec for the processes they start: the broker's endpoint (for kube-token)
    # and the mask channel's socket.
    exported = {
        "AZPYTEST_RUN_DIR",
        "AZPYTEST_PY",
        "AZPYTEST_BROKER_ENDPOINT",
        "AZPYTEST_MASK_SOCKET",
    }
    read = set()
    for path in SOURCE.rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        read |= set(re.findall(r"[\"'](AZPYTEST_[A-Z_]+)[\"']", path.read_text()))
    # Variables a connection's field is read from are derived per connection (AZPYTEST_<C>_...).
    unknown = {v for v in read - known - exported if not v.endswith("_")}
    assert unknown == set()


def test_the_readme_names_every_input_and_output() -> None:
    for name in [*ACTION["inputs"], *ACTION["outputs"]]:
        if name in OLD_NAMES:
            continue
        assert re.search(rf"`{re.escape(name)}`", README), f"README does not mention `{name}`"
    for spec in INPUTS:
        if spec.plugin or not spec.action:
            assert spec.variable in README or f"--{spec.name}" in README, spec.name


def test_the_steps_are_the_commands_that_take_identity_inputs() -> None:
    assert set(STEPS) <= set(BY_NAME["tenant-id"].steps)


def test_no_expression_inside_a_script() -> None:
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in str(step.get("run", "")), step.get("name")

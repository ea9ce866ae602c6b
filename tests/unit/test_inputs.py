"""The table of inputs: every boolean is `true` or `false` (any case) and nothing else, for
every command that reads it; the plugin's variables are checked the same way."""

from __future__ import annotations

import os

import pytest

from azpytest import cli
from azpytest.inputs import INPUTS, InputError, from_environment

BOOLEANS = [spec for spec in INPUTS if spec.kind == "bool"]
NOT_BOOLEANS = ["yes", "1", "on", "tru", "no", "0", "off", "flase", "y"]


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "GITHUB_", "RUNNER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize("value", NOT_BOOLEANS)
@pytest.mark.parametrize("spec", BOOLEANS, ids=lambda spec: spec.name)
def test_every_boolean_refuses_anything_but_true_or_false(
    spec: object,
    value: str,
    clean: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from azpytest.inputs import Input

    assert isinstance(spec, Input)
    clean.setenv(spec.variable, value)
    message = f"{spec.name}: {value!r} is not true or false"
    for step in [s for s in spec.steps if s not in ("cleanup", "kube-token")]:
        arguments = [step] + (["--", "true"] if step == "exec" else [])
        assert cli.main(arguments) == 2, step
        out, err = capsys.readouterr()
        assert err == f"azpytest {step}: error: {message}\n", step
        assert out == ""
    if spec.plugin or not spec.steps:
        with pytest.raises(InputError) as raised:
            from_environment(spec.name, {spec.variable: value})
        label = spec.name if spec.action else spec.variable
        assert str(raised.value) == f"{label}: {value!r} is not true or false"


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "false", "False"])
@pytest.mark.parametrize("spec", BOOLEANS, ids=lambda spec: spec.name)
def test_true_and_false_in_any_case_are_booleans(spec: object, value: str) -> None:
    from azpytest.inputs import Input

    assert isinstance(spec, Input)
    assert from_environment(spec.name, {spec.variable: value}) == value.lower()


def test_the_runners_own_debug_flag_is_one() -> None:
    assert from_environment("debug", {"RUNNER_DEBUG": "1"}) == "true"
    assert from_environment("debug", {"RUNNER_DEBUG": "1", "AZPYTEST_DEBUG": "false"}) == "false"


def test_a_plugin_number_names_its_variable() -> None:
    with pytest.raises(InputError) as raised:
        from_environment("role-minutes", {"AZPYTEST_ROLE_MINUTES": "0"})
    assert str(raised.value) == "AZPYTEST_ROLE_MINUTES: 0 is less than 1"


@pytest.mark.parametrize(
    ("text", "env", "source"),
    [
        ("BASH_ENV: pg-host", "BASH_ENV", "pg-host"),
        ("bash_env: pg-host", "bash_env", "pg-host"),
        ("LD_PRELOAD: lib", "LD_PRELOAD", "lib"),
        ("PATH: p", "PATH", "p"),
        ("GITHUB_ENV: x", "GITHUB_ENV", "x"),
        ("AZPYTEST_RUN_DIR: d", "AZPYTEST_RUN_DIR", "d"),
        ("AZURE_CLIENT_SECRET: s", "AZURE_CLIENT_SECRET", "s"),
        ("PYTHONPATH: s", "PYTHONPATH", "s"),
        ("- bash-env", "BASH_ENV", "bash-env"),
        ("- ld-preload", "LD_PRELOAD", "ld-preload"),
    ],
)
def test_a_secret_may_not_set_a_variable_that_changes_how_programs_start(
    text: str, env: str, source: str
) -> None:
    from azpytest.inputs import parse_secrets

    with pytest.raises(InputError) as raised:
        parse_secrets(text)
    assert str(raised.value) == (
        f"secrets: {env} <- {source}: a secret may not set {env}, which changes how later "
        "steps' programs start or which credential they use; map it to another name "
        f"(`MY_{env.upper()}: {source}`)"
    )


def test_ordinary_names_and_the_subscription_are_allowed() -> None:
    from azpytest.inputs import parse_secrets

    specs = parse_secrets("DB_PASSWORD: pg-password\nAZURE_SUBSCRIPTION_ID: sub\nENVIRONMENT: e")
    assert [s.env for s in specs] == ["DB_PASSWORD", "AZURE_SUBSCRIPTION_ID", "ENVIRONMENT"]

"""Workflow commands and the runner's files, byte for byte."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from azpytest.github import Workflow, read_file_commands
from azpytest.masking import mask_forms


def test_masks_value_lines_and_encoded_forms_once() -> None:
    out = io.StringIO()
    workflow = Workflow({"GITHUB_ACTIONS": "true"}, out)
    workflow.mask("line one\nab\nline%three", encoded=True)
    workflow.mask("line one")  # already masked: nothing again
    assert out.getvalue().splitlines() == [
        "::add-mask::line one%0Aab%0Aline%25three",
        "::add-mask::line one",
        "::add-mask::line%25three",
        "::add-mask::line one\\nab\\nline%25three",
        "::add-mask::bGluZSBvbmUKYWIKbGluZSV0aHJlZQ==",
    ]
    assert "ab" not in mask_forms("line one\nab")  # too short to mask alone


def test_nothing_that_could_reveal_a_value_is_printed_outside_actions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    workflow = Workflow({}, out)
    workflow.mask("s3cret-value")
    workflow.error("it broke", title="t", file="tests/x.py", line=3)
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "error: tests/x.py:3: t: it broke\n"


def test_annotation_properties_are_escaped() -> None:
    out = io.StringIO()
    Workflow({"GITHUB_ACTIONS": "true"}, out).error("a\nb", title="x::y, z", file="t.py", line=7)
    assert out.getvalue() == "::error file=t.py,line=7,title=x%3A%3Ay%2C z::a%0Ab\n"


def test_env_and_outputs_round_trip_through_heredocs(tmp_path: Path) -> None:
    env, output = tmp_path / "env", tmp_path / "output"
    workflow = Workflow({"GITHUB_ENV": str(env), "GITHUB_OUTPUT": str(output)}, io.StringIO())
    workflow.set_env("MULTI", "first\nEOF\nlast=line")
    workflow.set_output("total", "50")
    assert read_file_commands(env) == {"MULTI": "first\nEOF\nlast=line"}
    assert read_file_commands(output) == {"total": "50"}
    assert env.read_text().startswith("MULTI<<ghadelimiter_")

"""The mask channel: a token a fixture makes is masked in `run`'s log before anything shows it.

pytest captures the test process's stdout, so the plugin's `::add-mask::` lines go to `run`
through a private channel, and `run` writes them on its own stdout at the start of a line,
in order with pytest's output (which it relays). Each test runs the real `azpytest run`
step against the sandbox, then reads its stdout as the runner would: a mask counts from
the line after it, and a value printed before its mask is a leak.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from azpytest_sandbox import Sandbox

Step = Callable[..., Any]
FRAGMENT = 8  # masking.MIN_FRAGMENT: no stretch this long of a token may show
SUITE = """
    import os
    import sys

    def test_prints_its_token(azure_token):
        token = azure_token("https://vault.azure.net/.default")
        with open(os.environ["MASK_TEST_TOKEN"], "w") as kept:  # for the test to search
            kept.write(token)
        sys.stdout.write("a line the token follows: ")  # unfinished: the mask must not join it
        sys.stdout.flush()
        print("token=" + token)
        assert token == "something else"
"""


def suite(tmp_path: Path, *, ini: str = "") -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text(f"[pytest]\n{ini}")
    (root / "tests" / "test_token.py").write_text(textwrap.dedent(SUITE))
    return root


def runner_log(stdout: str) -> tuple[list[str], list[str]]:
    """The log as the runner shows it (each `::add-mask::` hides its value from the next line
    on), and the masks in the order they came."""
    masks: list[str] = []
    shown: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("::add-mask::"):
            masks.append(line.removeprefix("::add-mask::"))
            continue
        for mask in sorted(masks, key=len, reverse=True):
            line = line.replace(mask, "***")
        shown.append(line)
    return shown, masks


def fragments(value: str) -> set[str]:
    return {value[i : i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1)}


def leaks(texts: Iterable[str], values: Iterable[str]) -> list[str]:
    """Each fragment of a value found in the texts."""
    found = []
    for value in values:
        for fragment in sorted(fragments(value)):
            if any(fragment in text for text in texts):
                found.append(fragment)
    return found


def entra_tokens(masks: list[str]) -> list[str]:
    """The Entra ID tokens among the masks (the GitHub assertion and the broker's header are
    masks too; all are checked)."""
    return [m for m in masks if m.startswith("eyJ")]


@pytest.mark.parametrize(
    "capture",
    ["--capture=fd", "--capture=no", "--numprocesses=2"],
    ids=["fd-capture", "dash-s", "xdist-workers"],
)
@pytest.mark.parametrize("step", ["run", "exec"])
def test_a_fixture_token_is_masked_before_any_later_output(
    tmp_path: Path, sandbox: Sandbox, actions_step: Step, capture: str, step: str
) -> None:
    root = suite(tmp_path, ini=f"addopts = {capture}\n")
    kept = tmp_path / "token"
    # `exec -- python -m pytest` is the other way a job runs a suite (a step of its own
    # between prepare and cleanup): the same channel, the same log.
    command = (
        ["run"]
        if step == "run"
        else ["exec", "--", sys.executable, "-m", "pytest", f"--rootdir={root}", str(root)]
    )
    result = actions_step(
        sandbox,
        *command,
        env={"AZPYTEST_WORKING_DIRECTORY": str(root), "MASK_TEST_TOKEN": str(kept)},
    )
    assert result.returncode == 1, result.stdout[-4000:]
    shown, masks = runner_log(result.stdout)
    tokens = entra_tokens(masks)
    assert kept.read_text() in tokens  # the fixture's token was masked
    # Every mask starts a line of its own: none is glued to the unfinished line.
    assert not [line for line in result.stdout.splitlines() if "::add-mask::" in line[1:]]
    if capture == "--capture=no":  # the test's own print reached the log, after its mask
        assert "a line the token follows: " in result.stdout
        assert [line for line in shown if line.endswith("token=***")], shown
    assert leaks(shown, masks) == [], [s for s in shown if leaks([s], masks)]
    # Nor in any file the run wrote (JUnit, artifacts, the audit log, durations) but the
    # 0600 record of tokens for the report step, which cleanup deletes.
    files = [
        p
        for p in [*result.runner_temp.rglob("*"), *root.rglob("*")]
        if p.is_file() and p.name not in ("tokens.json", ".azpytest-credentials")
    ]
    written = {p.name for p in files}
    assert ("junit.xml" if step == "run" else "lastfailed") in written, written
    texts = [p.read_text(errors="replace") for p in files] + [str(p) for p in files]
    assert leaks(texts, tokens) == []
    record = next(p for p in result.runner_temp.rglob("tokens.json"))
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert set(tokens) <= set(json.loads(record.read_text()))


AZ_SUITE = """
    import os
    import subprocess

    def test_prints_an_az_token():
        token = subprocess.run(
            ["az", "account", "get-access-token", "--resource", "https://vault.azure.net",
             "--query", "accessToken", "--output", "tsv"],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()
        with open(os.environ["MASK_TEST_TOKEN"], "w") as kept:  # for the test to search
            kept.write(token)
        print("az token=" + token)
        assert token == "something else"
"""


def test_a_token_the_tests_az_gets_is_masked_before_they_print_it(
    tmp_path: Path, sandbox: Sandbox, actions_step: Step, az_cli: str
) -> None:
    """`run` logs the az CLI in through the broker: each token az is given passes the broker,
    which masks it through run's channel before az hands it to the test."""
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\naddopts = --capture=no\n")
    (root / "tests" / "test_az.py").write_text(textwrap.dedent(AZ_SUITE))
    kept = tmp_path / "token"
    result = actions_step(
        sandbox,
        "run",
        env={
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "MASK_TEST_TOKEN": str(kept),
            "PATH": f"{Path(az_cli).parent}:{os.environ['PATH']}",
        },
        timeout=300,
    )
    assert result.returncode == 1, result.stdout[-4000:]
    assert "azpytest: az: logs in through the token broker on first use" in result.stdout
    shown, masks = runner_log(result.stdout)
    token = kept.read_text()
    assert token in entra_tokens(masks)
    assert [line for line in shown if line.endswith("az token=***")], shown
    assert leaks(shown, masks) == [], [s for s in shown if leaks([s], masks)]
    # az keeps its tokens in its private config folder (0700, removed by cleanup); no other
    # file the run wrote holds a fragment.
    az_folder = next(p for p in result.runner_temp.rglob("az") if p.is_dir())
    assert oct(az_folder.stat().st_mode & 0o777) == "0o700"
    files = [
        p
        for p in result.runner_temp.rglob("*")
        if p.is_file()
        and az_folder not in p.parents
        and p.name not in ("tokens.json", ".azpytest-credentials")
    ]
    assert any(p.name == "junit.xml" for p in files)
    texts = [p.read_text(errors="replace") for p in files] + [str(p) for p in files]
    assert leaks(texts, [token]) == []

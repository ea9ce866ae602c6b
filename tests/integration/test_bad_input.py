"""Bad input never crashes azpytest.

A corpus: every input `prepare`, `run` and `exec` take, given each kind of bad value (empty,
whitespace, bytes that are not UTF-8 in a .env file and in the environment, 100 KB, a YAML alias
bomb, a key given twice, `../` traversal, a file where a folder is expected, a folder where a
file is expected) and a few values of their own. Each case either exits 2 with exactly one
stderr line naming the input, through the real CLI, or is a documented acceptance (ACCEPTED, with
the reason): `settings.load` takes it, and the step (which would reach the network) is not run.

Refusals run `azpytest.cli.main` in this process: `settings.load` refuses the value first (the
test checks that before it runs the CLI), so no case reaches the network. A few cases run
`python -m azpytest` in a subprocess, for the paths that only a real process has (bytes in its
environment, a huge argv) and to time the alias bomb.

Then a Hypothesis property test: any text for any input, as a flag or a variable, makes
`settings.load` return or raise an InputError of one line, never another exception.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from azpytest import cli
from azpytest.inputs import BY_NAME, INPUTS, Input, InputError
from azpytest.settings import load

STEPS = ("prepare", "run", "exec")
UNDER_TEST = [spec for spec in INPUTS if set(spec.steps) & set(STEPS)]
GUID = "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d"

# A list whose every level repeats the one above nine times: 9**8 strings, if it were expanded.
BOMB = "- &a [lolololololololololololololololololololololololololololololololol, lol, lol]\n" + (
    "".join(
        f"- &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]  # {'.' * 20}\n" for i in range(8)
    )
)
DOTENV_BYTES = b"\xff\xfe not UTF-8"
ENVIRON_BYTES = DOTENV_BYTES.decode("utf-8", "surrogateescape")  # os.environ's form of them


@dataclass(frozen=True)
class Case:
    """One value of the corpus for one input, and how it reaches azpytest."""

    name: str
    value: str  # for "dotenv": the text after `VARIABLE=` (DOTENV_BYTES are appended)
    via: str = "env"  # env (AZPYTEST_<NAME>) | flag | dotenv


def _duplicate_keys(spec: Input) -> str:
    if spec.name == "profiles":
        return "connections:\n  db: {kind: postgres}\n  db: {kind: azure-sql}\n"
    if spec.kind == "words":
        return "- {a: b, a: c}\n"
    return "PG_HOST: pg-host\nPG_HOST: pg-other\n"


CASES: dict[str, Callable[[Input, Path], Case]] = {
    "empty": lambda spec, tmp: Case("empty", ""),
    "whitespace": lambda spec, tmp: Case("whitespace", " \t  "),
    "non-utf8 .env": lambda spec, tmp: Case("non-utf8 .env", "", via="dotenv"),
    "non-utf8 environ": lambda spec, tmp: Case("non-utf8 environ", ENVIRON_BYTES),
    "100 KB": lambda spec, tmp: Case("100 KB", "x" * 100_000, via="flag"),
    "alias bomb": lambda spec, tmp: Case("alias bomb", BOMB),
    "duplicate keys": lambda spec, tmp: Case("duplicate keys", _duplicate_keys(spec)),
    "../ traversal": lambda spec, tmp: Case("../ traversal", "../" * 12 + "etc/passwd", via="flag"),
    "file for folder": lambda spec, tmp: Case("file for folder", str(tmp / "a-file.txt")),
    "folder for file": lambda spec, tmp: Case("folder for file", str(tmp / "a-folder")),
}

# Each accepted (input, case), and why: `settings.load` takes the value. Every other case of
# the corpus must exit 2 with one line.
_UNSET = "empty or blank is not set: the default applies"
_PYTEST = "pytest's own (paths, node ids, an -m expression, arguments): pytest judges them"
ACCEPTED: dict[tuple[str, str], str] = {
    **{(spec.name, "empty"): _UNSET for spec in UNDER_TEST},
    **{(spec.name, "whitespace"): _UNSET for spec in UNDER_TEST},
    **{
        (name, case): _PYTEST
        for name in ("tests", "markers", "pytest-args")
        for case in ("../ traversal", "file for folder", "folder for file")
    },
    ("run-dir", "folder for file"): "a folder is what run-dir names",
    ("working-directory", "folder for file"): "a folder is what working-directory names",
    ("junit-path", "../ traversal"): "the workflow chooses where its JUnit file goes",
    ("junit-path", "file for folder"): "an existing JUnit file is replaced (a rerun's)",
    ("rerun-failed-from", "../ traversal"): (
        "a file: `run` reads it as JUnit before pytest starts and refuses what is not (exit 2)"
    ),
    ("rerun-failed-from", "file for folder"): (
        "a file: `run` reads it as JUnit before pytest starts and refuses what is not (exit 2)"
    ),
}

# Values of their own, beyond the corpus's kinds: (input, label, value, refused?).
EXTRA: list[tuple[str, str, str, bool]] = [
    ("secrets", "a boolean key", "true: pg-host", True),
    ("secrets", "a number as a secret", "PG_PORT: 5432", True),
    ("secrets", "a YAML anchor alone", "A: &x pg-host", True),
    ("secrets", "nested 70 000 deep", "[" * 70_000, True),  # over 64 KiB: the size line
    ("secrets", "nested 60 000 deep", "[" * 60_000, True),
    ("secrets", "a month 13", "A: 2001-13-01", True),
    ("profiles", "a boolean connection name", "connections:\n  true: {kind: postgres}", True),
    ("tests", "a boolean item", "- true", True),
    ("pytest-args", "a mapping item", "- {a: b}", True),
    ("pytest-args", "numbers are words", "[-n, 4]", False),
    ("python", "with arguments", "python3 -X dev", True),
    ("python", "not on PATH", "no-such-python-here", True),
    ("python", "too old", "{tmp}/python2", True),
    ("python", "not Python", "/bin/true", True),
    ("python", "this interpreter", sys.executable, False),
    ("run-dir", "under /proc", "/proc/azpytest-run", True),
    ("run-dir", "under a file", "{tmp}/a-file.txt/run", True),
    ("junit-path", "under a file", "{tmp}/a-file.txt/junit.xml", True),
    ("durations-path", "a list of names", "{tmp}/names.json", True),
    ("durations-path", "seconds as text", "{tmp}/text-seconds.json", True),
    ("durations-path", "pytest-split's mapping", "{tmp}/durations.json", False),
    ("durations-path", "pytest-split's older list", "{tmp}/durations-list.json", False),
    ("durations-path", "absent (a first run)", "{tmp}/none-yet.json", False),
    ("audience", "a space", "api://x y", True),
    ("audience", "no scheme", "AzureADTokenExchange", True),
    ("audience", "601 characters", "api://" + "x" * 595, True),
    ("audience", "a custom URI", "api://my-app/exchange", False),
    ("tenant-id", "a line break", "8d2a1c3e\n-5f47", True),
    ("workers", "a superscript two", "\u00b2", True),
    ("key-vault", "a control character", "kv\x01app", True),
]


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working folder, an environment without azpytest's or Azure's variables, and
    the files the cases name."""
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "GITHUB_", "RUNNER_", "ACTIONS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path / "runner-temp"))
    work = tmp_path / "work" / "deep" / "er"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (tmp_path / "a-file.txt").write_text("hello\n")
    (tmp_path / "a-folder").mkdir()
    old = tmp_path / "python2"
    old.write_text("#!/bin/sh\necho 2.7\n")
    old.chmod(0o755)
    (tmp_path / "names.json").write_text('["test_a.py::test_one", "test_a.py::test_two"]')
    (tmp_path / "text-seconds.json").write_text('{"test_a.py::test_one": "slow"}')
    (tmp_path / "durations.json").write_text('{"test_a.py::test_one": 1.5}')
    (tmp_path / "durations-list.json").write_text('[["test_a.py::test_one", 1.5]]')
    yield tmp_path


def _partners(spec: Input) -> dict[str, str]:
    """Valid values of the inputs this one needs, so a refusal is about this one."""
    if spec.name == "aks-resource-group":
        return {"aks-cluster": "aks-app", "subscription-id": GUID}
    if spec.name == "aks-cluster":
        return {"aks-resource-group": "rg-app", "subscription-id": GUID}
    if spec.name in ("secrets", "profiles"):
        return {"key-vault": "kv-app"}
    return {}


def _deliver(spec: Input, case: Case, place: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Put the case where azpytest reads it; the flags for the command line."""
    partners = _partners(spec) if case.value.strip() else {}  # blank: this one is unset too
    flags = [arg for name, value in partners.items() for arg in (f"--{name}", value)]
    if case.via == "dotenv":
        Path(".env").write_bytes(f"{spec.variable}={case.value}".encode() + DOTENV_BYTES + b"\n")
    elif case.via == "flag" and spec.kind != "bool":
        flags += [spec.flag, case.value]
    else:
        monkeypatch.setenv(spec.variable, case.value)
    return flags


def _flag_values(arguments: list[str]) -> dict[str, str | None]:
    args, _ = cli.build_parser().parse_known_args(["run", *arguments])
    return cli._flags(args)


def _outcome(
    spec: Input, case: Case, place: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> tuple[str, str]:
    """("refused", "exit 2") when settings.load refuses the case and the CLI exits 2 (its
    stderr is the caller's to read), ("accepted", "") when load takes it, else ("wrong", why)."""
    with monkeypatch.context() as patch:
        arguments = _deliver(spec, case, place, patch)
        try:
            try:
                load(_flag_values(arguments), dict(os.environ))
            except InputError:
                pass
            else:
                return "accepted", ""
            # load refused it: the step never starts, so nothing reaches the network.
            code = cli.main([step, *arguments] + (["--", "true"] if step == "exec" else []))
        finally:
            Path(".env").unlink(missing_ok=True)
    return ("refused" if code == 2 else "wrong"), f"exit {code}"


def _names_the_input(spec: Input, case: Case, line: str, step: str) -> bool:
    head = f"azpytest {step}: error: "
    if not line.startswith(head):
        return False
    problem = line[len(head) :]
    if case.via == "dotenv":  # the bytes are in the file: the line names it
        return problem.startswith("env-file .env: ")
    partners = tuple(f"{name}: " for name in _partners(spec))
    named = (f"{spec.name}: ", f"{spec.name} ", f"{spec.variable}: ")  # `env-file PATH: ...`
    return problem.startswith(named) or (problem.startswith(partners) and spec.name in problem)


def _run_corpus(
    step: str,
    place: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[dict[str, int], list[str]]:
    counts = {"refused": 0, "accepted": 0}
    wrong: list[str] = []
    cases = [
        (spec, make(spec, place), (spec.name, label) in ACCEPTED)
        for spec in UNDER_TEST
        for label, make in CASES.items()
    ]
    cases += [
        (BY_NAME[name], Case(label, value.replace("{tmp}", str(place))), not refused)
        for name, label, value, refused in EXTRA
    ]
    for spec, case, accepted in cases:
        capsys.readouterr()
        outcome, detail = _outcome(spec, case, place, monkeypatch, step)
        out, err = capsys.readouterr()
        where = f"{spec.name} with {case.name}"
        if accepted:
            if outcome != "accepted":
                wrong.append(f"{where}: documented as accepted, but {err.strip() or detail}")
            counts["accepted"] += outcome == "accepted"
            continue
        if outcome == "accepted":
            wrong.append(f"{where}: accepted, but neither refused nor documented in ACCEPTED")
        elif outcome == "wrong" or err.count("\n") != 1 or "Traceback" in err + out:
            wrong.append(f"{where}: {detail}, stderr {err!r}")
        elif not _names_the_input(spec, case, err.rstrip("\n"), step):
            wrong.append(f"{where}: the line does not name the input: {err!r}")
        else:
            counts["refused"] += 1
    return counts, wrong


@pytest.mark.parametrize("step", STEPS)
def test_the_bad_input_corpus_exits_2_with_one_line_or_is_a_documented_acceptance(
    step: str,
    place: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    counts, wrong = _run_corpus(step, place, monkeypatch, capsys)
    total = len(UNDER_TEST) * len(CASES) + len(EXTRA)
    with capsys.disabled():
        print(
            f"\nbad-input corpus, azpytest {step}: {len(UNDER_TEST)} inputs x {len(CASES)} "
            f"kinds + {len(EXTRA)} own values = {total} cases: {counts['refused']} exit 2 "
            f"with one line, {counts['accepted']} accepted as documented, {len(wrong)} wrong "
            f"({time.monotonic() - started:.1f} s)"
        )
    assert not wrong, "\n".join(wrong)
    assert counts["refused"] + counts["accepted"] == total


# ---------------------------------------------------------------------------- real processes


def _azpytest(
    args: list[str], env: dict[bytes, bytes], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {
        key.encode(): value.encode()
        for key, value in os.environ.items()
        if not key.startswith(("AZPYTEST_", "AZURE_", "GITHUB_", "RUNNER_", "ACTIONS_"))
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "azpytest", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        pytest.param(
            ["prepare"],
            {b"AZPYTEST_SECRETS": BOMB.encode(), b"AZPYTEST_KEY_VAULT": b"kv-app"},
            "azpytest prepare: error: secrets: YAML anchors and aliases (&name, *name) are "
            "not supported; write the value out (line 1)",
            id="alias bomb",
        ),
        pytest.param(
            ["run"],
            {b"AZPYTEST_TENANT_ID": DOTENV_BYTES},
            "azpytest run: error: tenant-id: holds bytes that are not UTF-8 text",
            id="environ bytes",
        ),
        pytest.param(
            ["exec", "--run-dir", "r" * 100_000, "--", "true"],
            {},
            "azpytest exec: error: run-dir: is 100000 bytes long; the limit is 4 KiB",
            id="100 KB argv",
        ),
        pytest.param(
            ["run", "--run-dir", "r" * 300],
            {},
            "azpytest run: error: run-dir: a part of the path is 300 bytes long; the limit is 255",
            id="file name too long",
        ),
        pytest.param(
            ["cleanup", "--run-dir", "r" * 300],
            {},
            "azpytest cleanup: error: run-dir: a part of the path is 300 bytes long; the limit "
            "is 255",
            id="cleanup: file name too long",
        ),
        pytest.param(
            ["run"],
            {b"AZPYTEST_PYTHON": b"python3 -X dev"},
            "azpytest run: error: python: 'python3 -X dev' has arguments; give the interpreter "
            "alone",
            id="python with arguments",
        ),
    ],
)
def test_a_real_process_exits_2_with_one_line_at_once(
    args: list[str], env: dict[bytes, bytes], line: str, tmp_path: Path
) -> None:
    done, seconds = _azpytest(args, env, tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (2, line + "\n", "")
    assert seconds < 15  # the bomb is refused at its first anchor, not expanded


# ---------------------------------------------------------------------------- any text


_YAML_BITS = ["- ", "&a ", "*a", "[", "]", "{", "}", ": ", "\n", "  ", "x", "true", "1", "'"]
_YAML_BITS += ['"', "!!", "? ", "#", ",", "../", "/", "\t", "null", "2001-13-01", "<<: ", "|"]
TEXT = st.one_of(
    st.text(),
    st.text(st.characters(exclude_categories=())),  # lone surrogates: bytes os.environ kept
    st.lists(st.sampled_from(_YAML_BITS), max_size=30).map("".join),
)
NAMES = st.sampled_from([spec.name for spec in UNDER_TEST])


@pytest.fixture(scope="module")
def somewhere_empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("any-text")
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)


@hypothesis_settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=NAMES, text=TEXT, as_flag=st.booleans())
def test_any_text_for_any_input_loads_or_is_one_line(
    somewhere_empty: Path, name: str, text: str, as_flag: bool
) -> None:
    spec = BY_NAME[name]
    # A glob from / or above would walk the whole disk: slow, not wrong.
    assume(not (name == "rerun-failed-from" and text.lstrip().startswith(("/", "..", "~"))))
    flags = {name: text} if as_flag else {}
    environ = {} if as_flag else {spec.variable: text}  # no PATH: no program is found by name
    try:
        load(flags, environ)
    except InputError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
        assert str(exc).isprintable(), str(exc)

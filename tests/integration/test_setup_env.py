"""The action's first step builds the tests' environment the way a job expects it: what an
earlier step installed into the job's Python is importable (behind azpytest's own locked
packages), `requirements` never replace a locked package, and a `python-version` or `cache`
that is not one exits 2 in one line (nothing of it can make a second line or a workflow
command)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"


@dataclass(frozen=True)
class Runner:
    temp: Path
    tools: Path
    job_bin: Path
    job_site: Path

    def setup(
        self, requirements: str = "", *args: str, **env: str
    ) -> subprocess.CompletedProcess[str]:
        # This machine's environment (its package index settings and CA bundle), less any
        # runner or azpytest variable, as a job's step gets it.
        own = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZPYTEST_", "GITHUB_", "RUNNER_", "VIRTUAL_ENV"))
        }
        env = {
            **own,
            "PATH": f"{self.job_bin}:{os.environ['PATH']}",
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(self.temp),
            "RUNNER_TOOL_CACHE": str(self.tools),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_OUTPUT": str(self.temp / "output"),
            "AZPYTEST_REQUIREMENTS": requirements,
            **env,
        }
        (self.temp / "output").unlink(missing_ok=True)
        return subprocess.run(
            ["bash", str(SETUP), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def outputs(self) -> dict[str, str]:
        path = self.temp / "output"
        lines = path.read_text().splitlines() if path.exists() else []
        return dict(line.split("=", 1) for line in lines)

    @property
    def envs(self) -> list[Path]:
        """The environments setup built, in the tool cache (one per key)."""
        return sorted(p for p in (self.tools / "azpytest-env").glob("azpytest-env-*") if p.is_dir())

    @property
    def venv(self) -> Path:
        """The environment of a setup without requirements (set up again if another test
        left it otherwise: then it is ready at once)."""
        done = self.setup()
        assert done.returncode == 0, done.stdout + done.stderr
        return Path(self.outputs()["python"]).parent.parent

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _uv_version() -> str:
    for line in (ROOT / "requirements" / "uv.txt").read_text().splitlines():
        if line.startswith("uv=="):
            return line.split("==", 1)[1].split()[0]
    raise AssertionError("requirements/uv.txt names no uv version")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """A runner whose job set up Python and installed its test packages into it (here a
    virtualenv put first on PATH, as actions/setup-python puts its Python), then ran setup."""
    base = tmp_path_factory.mktemp("runner")
    temp, tools, job = base / "temp", base / "tools", base / "job-python"
    temp.mkdir()
    # uv from this machine's install when it is the pinned version (else setup bootstraps it).
    found = subprocess.run(
        ["python3", "-m", "uv", "--version"], capture_output=True, text=True, check=False
    )
    if found.stdout.split()[1:2] == [_uv_version()]:
        located = subprocess.run(
            ["python3", "-c", "import uv; print(uv.find_uv_bin())"],
            capture_output=True,
            text=True,
            check=True,
        )
        cached = tools / "azpytest-uv" / _uv_version() / platform.machine()
        cached.mkdir(parents=True)
        shutil.copy(located.stdout.strip(), cached / "uv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(job)], check=True)
    site = Path(
        subprocess.run(
            [
                str(job / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # `pip install shopclient` and `pip install -e .` of the team's own package, as files.
    (site / "shopclient").mkdir()
    (site / "shopclient" / "__init__.py").write_text("NAME = 'shopclient'\n")
    source = base / "shop" / "src"
    (source / "shop").mkdir(parents=True)
    (source / "shop" / "__init__.py").write_text("NAME = 'shop'\n")
    (site / "__editable__.shop-1.0.pth").write_text(f"{source}\n")
    made = Runner(temp, tools, job / "bin", site)
    done = made.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    return made


def test_the_jobs_own_packages_import_behind_azpytests(runner: Runner) -> None:
    probe = (
        "import azure.identity, shop, shopclient, sys; "
        "print(shop.NAME, shopclient.NAME); print(azure.identity.__file__)"
    )
    done = subprocess.run(
        [str(runner.python), "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    names, identity = done.stdout.splitlines()
    assert names == "shop shopclient"
    assert identity.startswith(str(runner.venv))  # azpytest's locked copy


def test_a_requirement_that_would_replace_a_locked_package_exits_2(runner: Runner) -> None:
    pinned = next(
        line.split()[0]
        for line in (ROOT / "requirements" / "action.txt").read_text().splitlines()
        if line.startswith("azure-identity==")
    )
    done = runner.setup("azure-identity==1.16.0")
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(
        "::error title=azpytest: requirements conflict::requirements: they need another "
        f"version of azure-identity, which azpytest pins at {pinned} (uv: Because "
    )
    # Nothing was replaced: azpytest still runs.
    version = subprocess.run(
        [str(runner.python), "-c", "import azure.identity; print(azure.identity.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == pinned.split("==")[1]


def test_a_requirements_file_that_does_not_resolve_exits_2(runner: Runner) -> None:
    wanted = runner.temp / "requirements-test.txt"
    wanted.write_text("azpytest-no-such-package-4f1c==1.0\n")
    done = runner.setup(str(wanted))
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(
        "::error title=azpytest: requirements not installed::requirements: uv could not "
        "install them: "
    )
    assert "azpytest-no-such-package-4f1c" in lines[0]


def test_requirements_install_within_the_locked_versions(runner: Runner) -> None:
    wanted = runner.temp / "requirements-ok.txt"
    wanted.write_text("kubernetes>=30\n")
    done = runner.setup(str(wanted))
    assert done.returncode == 0, done.stdout + done.stderr
    probe = "import kubernetes, urllib3; print(urllib3.__version__)"
    python = runner.outputs()["python"]  # the environment of these requirements
    ran = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    locked = next(
        line.split()[0].split("==")[1]
        for line in (ROOT / "requirements" / "action.txt").read_text().splitlines()
        if line.startswith("urllib3==")
    )
    assert ran.stdout.strip() == locked  # kubernetes' own dependency kept at azpytest's pin


KEY = re.compile(r"azpytest-env-v1-Linux-[a-z0-9_]+-py3\.\d+\.\d+-[0-9a-f]{32}")


def test_packages_are_compiled_at_install(runner: Runner) -> None:
    """The first azpytest command of a job reads bytecode (issue 17, part 1)."""
    site = runner.venv / "lib"
    for package in ("azure/identity", "azpytest", "requests"):
        [folder] = site.glob(f"python3*/site-packages/{package}")
        assert list((folder / "__pycache__").glob("*.pyc")), folder


def test_a_second_setup_of_the_same_parts_uses_the_environment_as_it_is(runner: Runner) -> None:
    assert runner.setup().returncode == 0  # (an earlier test may have left another venv)
    done = runner.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = done.stdout.splitlines()
    assert re.fullmatch(
        rf"azpytest: environment ready in \d+\.\d s \(Python 3\.\d+\.\d+, "
        rf"{re.escape(str(runner.venv))}; as it was: {KEY.pattern}\)",
        line,
    ), line
    assert runner.outputs()["cached"] == "true"
    assert runner.outputs()["python"] == str(runner.python)


def test_the_cache_key_names_what_the_environment_is_made_of(
    runner: Runner, tmp_path: Path
) -> None:
    # On this runner the environment is built already: nothing for the cache to restore.
    assert runner.setup().returncode == 0
    done = runner.setup("", "--cache-key")
    assert done.returncode == 0, done.stderr
    assert "key" not in runner.outputs()
    assert done.stdout.startswith("azpytest: environment azpytest-env-v1-Linux-")
    assert done.stdout.endswith(" is on this runner already: nothing to restore\n")
    # A fresh runner (a hosted one): the key and the folder to restore.
    fresh = str(tmp_path / "fresh-tools")

    def key_of(requirements: str = "", **env: str) -> str:
        done = runner.setup(requirements, "--cache-key", RUNNER_TOOL_CACHE=fresh, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        return runner.outputs()["key"]

    key = key_of()
    assert KEY.fullmatch(key), key
    assert runner.outputs()["path"] == f"{fresh}/azpytest-env/{key}"
    # Other requirements, or a requirement file whose content changed: another key.
    assert key_of("shopclient") != key
    requirements = tmp_path / "requirements-test.txt"
    requirements.write_text("shopclient\n")
    first = key_of(str(requirements))
    requirements.write_text("shopclient>=1\n")
    assert key_of(str(requirements)) not in (first, key)
    # Another azpytest (its locks or its code): another key.
    action = tmp_path / "action"
    for part in ("requirements", "scripts/azpytest"):
        shutil.copytree(ROOT / part, action / part)
    shutil.copy(ROOT / "pyproject.toml", action / "pyproject.toml")
    assert key_of(GITHUB_ACTION_PATH=str(action)) == key
    with (action / "scripts" / "azpytest" / "settings.py").open("a") as changed:
        changed.write("# another version\n")
    assert key_of(GITHUB_ACTION_PATH=str(action)) != key


@pytest.mark.parametrize(("value", "key"), [("FALSE", False), ("True", True), ("false", False)])
def test_the_cache_input_takes_any_case_of_true_and_false(
    runner: Runner, value: str, key: bool, tmp_path: Path
) -> None:
    fresh = str(tmp_path / "fresh-tools")
    done = runner.setup("", "--cache-key", AZPYTEST_CACHE=value, RUNNER_TOOL_CACHE=fresh)
    assert done.returncode == 0, done.stdout
    assert ("key" in runner.outputs()) is key


def test_a_cache_input_that_is_not_a_boolean_exits_2_with_one_line(runner: Runner) -> None:
    done = runner.setup("", "--cache-key", AZPYTEST_CACHE="yes")
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "::error title=azpytest: bad input::cache: 'yes' is not true or false. Write cache: "
        "true (restore azpytest's environment from the Actions cache) or cache: false."
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("../../bin/sh", "../../bin/sh"),
        ("3.11;id", "3.11;id"),
        ("python3", "python3"),
        # A workflow command smuggled in: a newline, or %0A (which the runner decodes).
        ("3.11\n::error::boom", "3.11?::error::boom"),
        ("3.11%0A::error::boom", "3.11%250A::error::boom"),
        ("\udcff\udcfe3.11", "??3.11"),  # bytes that are not UTF-8, as os.environ holds them
        ("1" * 3000, "1" * 60 + "…"),
    ],
    ids=["traversal", "shell", "command-name", "newline", "percent-newline", "non-utf8", "3000"],
)
def test_a_python_version_that_is_not_one_exits_2_with_one_line(
    runner: Runner, value: str, shown: str
) -> None:
    done = runner.setup("", "--cache-key", AZPYTEST_PYTHON_VERSION=value)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"::error title=azpytest: bad input::python-version: '{shown}' is not a Python version "
        "like 3.12. Write python-version: '3.12' (a python3.12 on PATH, as actions/setup-python "
        "puts it) or leave it empty to use python3."
    ]


def test_inputs_with_spaces_around_them_are_taken_as_written_without(
    runner: Runner, tmp_path: Path
) -> None:
    """As the Python steps take theirs: a YAML value quoted with a space is not a typo."""
    fresh = str(tmp_path / "fresh-tools")
    done = runner.setup("", "--cache-key", AZPYTEST_CACHE=" false\n", RUNNER_TOOL_CACHE=fresh)
    assert done.returncode == 0, done.stdout
    assert "key" not in runner.outputs()
    done = runner.setup("", "--cache-key", AZPYTEST_PYTHON_VERSION=" \t", RUNNER_TOOL_CACHE=fresh)
    assert done.returncode == 0, done.stdout
    assert runner.outputs()["key"].startswith("azpytest-env-v1-Linux-")


def test_a_cache_input_with_a_newline_in_it_is_still_one_line(runner: Runner) -> None:
    done = runner.setup("", "--cache-key", AZPYTEST_CACHE="tr\n::error::boom\nue")
    assert done.returncode == 2
    [line] = done.stdout.splitlines()
    assert line.startswith("::error title=azpytest: bad input::cache: 'tr?::error::boom?ue' ")


@pytest.mark.parametrize("option", ["--index-url=http://127.0.0.1:9/simple", "-e"])
def test_an_option_in_requirements_exits_2_before_anything_is_installed(
    runner: Runner, option: str
) -> None:
    """The input takes files and package names; an option word (which uv would take as its
    own, silently) is refused in the first step, before a key is made."""
    done = runner.setup(f"{option} requests", "--cache-key")
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"::error title=azpytest: bad input::requirements: '{option}' is an option; the input "
        "takes requirement files and package names. Put options (-e ., --index-url) in a "
        "requirements file and name the file."
    ]
    assert "key" not in runner.outputs()


def test_what_uv_says_about_a_requirement_cannot_make_a_workflow_command(
    runner: Runner,
) -> None:
    done = runner.setup("shopclient%0A::error::boom")
    assert done.returncode == 2
    [line] = done.stdout.splitlines()
    assert line.startswith(
        "::error title=azpytest: requirements not installed::requirements: uv could not "
        "install them: "
    )
    assert "shopclient%250A::error::boom" in line  # the runner decodes it back to %0A


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "allways",
            "upload: 'allways' is not always, failure or never. Write upload: failure (the "
            "default: the JUnit file, failure artifacts and audit log when the job fails), always "
            "or never.",
        ),
        (
            "true",
            "upload: 'true' is not always, failure or never. Write upload: failure (the default: "
            "the JUnit file, failure artifacts and audit log when the job fails), always or never.",
        ),
    ],
)
def test_an_upload_input_that_is_not_one_exits_2_in_the_first_step(
    runner: Runner, value: str, line: str
) -> None:
    """Only the action's YAML reads `upload`: a typo would upload nothing, after the tests."""
    done = runner.setup("", "--cache-key", AZPYTEST_UPLOAD=value)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [f"::error title=azpytest: bad input::{line}"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("shop/results", "shop/results"), ("shop:1", "shop:1"), ("a\nb=c", "a?b=c")],
    ids=["slash", "colon", "newline"],
)
def test_an_artifact_name_upload_artifact_would_refuse_exits_2_in_the_first_step(
    runner: Runner, value: str, shown: str
) -> None:
    done = runner.setup("", "--cache-key", AZPYTEST_ARTIFACT_NAME=value)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"::error title=azpytest: bad input::artifact-name: '{shown}' holds a character an "
        'artifact name cannot (" : < > | * ? \\ / or a control character). Write a name of '
        "letters, digits, - _ and ., or leave it empty for azpytest-<job>-<shard>-<attempt>."
    ]


def test_upload_and_artifact_name_reach_the_later_steps_trimmed(runner: Runner) -> None:
    done = runner.setup(
        "", "--cache-key", AZPYTEST_UPLOAD=" Always\n", AZPYTEST_ARTIFACT_NAME=" shop-results "
    )
    assert done.returncode == 0, done.stdout
    outputs = runner.outputs()
    assert (outputs["upload"], outputs["artifact-name"]) == ("always", "shop-results")
    done = runner.setup("", "--cache-key")
    assert (runner.outputs()["upload"], runner.outputs()["artifact-name"]) == ("failure", "")


def test_a_venv_of_other_parts_is_set_up_again(runner: Runner) -> None:
    assert runner.setup().returncode == 0
    key_file = runner.venv / ".azpytest-environment-key"
    key = key_file.read_text()
    key_file.write_text("azpytest-env-v1-an-older-azpytest\n")
    done = runner.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as it was" not in done.stdout
    assert "cached" not in runner.outputs()
    assert key_file.read_text() == key


def test_two_jobs_setting_up_at_once_build_one_environment(runner: Runner) -> None:
    """Jobs of a matrix on one self-hosted runner share its tool cache: the first builds the
    environment under the key's lock, the other waits and uses it as it is."""
    requirements = "requests pytest"  # a new key, resolved within the locks
    own = {k: v for k, v in os.environ.items() if not k.startswith(("AZPYTEST_", "GITHUB_"))}
    jobs = []
    for n in range(2):
        out = runner.temp / f"output-{n}"
        env = {
            **own,
            "PATH": f"{runner.job_bin}:{os.environ['PATH']}",
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(runner.temp),
            "RUNNER_TOOL_CACHE": str(runner.tools),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_OUTPUT": str(out),
            "AZPYTEST_REQUIREMENTS": requirements,
        }
        jobs.append(
            subprocess.Popen(
                ["bash", str(SETUP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    said = [job.communicate(timeout=600)[0].decode() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], said
    assert sum("; as it was: azpytest-env-v1-" in line for line in said) == 1, said
    pythons = {
        (runner.temp / f"output-{n}").read_text().split("python=")[1].split()[0] for n in range(2)
    }
    assert len(pythons) == 1


def _fresh_runner(base: Path, job_bin: Path) -> Runner:
    """A runner whose tool cache is empty (no uv, no environment): a hosted runner's first
    job without the Actions cache."""
    (base / "temp").mkdir(parents=True)
    return Runner(base / "temp", base / "tools", job_bin, base / "unused-site")


def test_uv_is_taken_from_its_locked_wheel_without_a_venv(tmp_path: Path) -> None:
    """Issue 17, part 1: a cold setup takes uv from its hash-locked wheel, fetched by the
    runner's own pip; no venv is made for it."""
    python3 = shutil.which("python3")
    assert python3 is not None
    has_pip = subprocess.run([python3, "-m", "pip", "--version"], capture_output=True)
    assert has_pip.returncode == 0, "this machine's python3 has pip (make bootstrap uses it)"
    made = _fresh_runner(tmp_path, Path(python3).parent)
    done = made.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    uv_dir = made.tools / "azpytest-uv" / _uv_version() / platform.machine()
    assert done.stdout.endswith(
        f"; uv {_uv_version()} from the locked wheel (pip download, no venv), kept in {uv_dir})\n"
    ), done.stdout
    assert sorted(p.name for p in uv_dir.iterdir()) == ["uv"]  # the bootstrap folder is gone
    ran = subprocess.run([str(uv_dir / "uv"), "--version"], capture_output=True, text=True)
    assert ran.stdout.split()[:2] == ["uv", _uv_version()]


def test_a_python_without_pip_gets_uv_through_a_venv(tmp_path: Path) -> None:
    job = tmp_path / "job-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(job)], check=True)
    made = _fresh_runner(tmp_path / "runner", job / "bin")
    done = made.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    uv_dir = made.tools / "azpytest-uv" / _uv_version() / platform.machine()
    # No pip to download with: said by the line, not as a failure.
    [line] = done.stdout.splitlines()
    assert line.endswith(f"; uv {_uv_version()} from pip in a venv, kept in {uv_dir})"), line
    assert sorted(p.name for p in uv_dir.iterdir()) == ["uv"]


def test_a_pip_that_cannot_download_falls_back_to_a_venv_and_says_why(tmp_path: Path) -> None:
    """A runner's pip that answers --version but fails the download (an old or broken pip):
    setup says so in one line and gets uv through a venv of its own (ensurepip's pip)."""
    job = tmp_path / "job-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(job)], check=True)
    site = next((job / "lib").glob("python3*/site-packages"))
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(
        "import sys\n"
        "if sys.argv[1:] == ['--version']:\n"
        "    print('pip 9.0.1')\n"
        "    sys.exit(0)\n"
        "print('ERROR: no such option: --only-binary', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    made = _fresh_runner(tmp_path / "runner", job / "bin")
    done = made.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    uv_dir = made.tools / "azpytest-uv" / _uv_version() / platform.machine()
    said, ready = done.stdout.splitlines()
    assert said == (
        "azpytest: pip download of the locked uv wheel failed (ERROR: no such option: "
        "--only-binary); installing it in a venv instead"
    )
    assert ready.endswith(f"; uv {_uv_version()} from pip in a venv, kept in {uv_dir})")

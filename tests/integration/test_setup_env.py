"""The action's first step builds the tests' environment the way a job expects it: what an
earlier step installed into the job's Python is importable (behind azpytest's own locked
packages), and `requirements` never replace a locked package (exit 2, one line)."""

from __future__ import annotations

import os
import platform
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

    def setup(self, requirements: str = "") -> subprocess.CompletedProcess[str]:
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
        }
        return subprocess.run(
            ["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=600, check=False
        )

    @property
    def python(self) -> Path:
        return self.temp / "azpytest-venv" / "bin" / "python"


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
    assert identity.startswith(str(runner.temp / "azpytest-venv"))  # azpytest's locked copy


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
    ran = subprocess.run([str(runner.python), "-c", probe], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    locked = next(
        line.split()[0].split("==")[1]
        for line in (ROOT / "requirements" / "action.txt").read_text().splitlines()
        if line.startswith("urllib3==")
    )
    assert ran.stdout.strip() == locked  # kubernetes' own dependency kept at azpytest's pin

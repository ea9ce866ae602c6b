"""What `pip install azpytest` gives a user: the product's wheel, without the sandbox.

The wheels are built from this checkout with uv and installed into fresh virtual environments
with their dependencies from uv's cache (or PyPI), as CI and a user's machine get them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The Makefile's uv (`make bootstrap` installs it for python3).
UV = ["python3", "-m", "uv"]
HINT = (
    "azpytest sandbox: error: the sandbox is not installed: "
    "pip install 'azpytest[sandbox]' (in this repository: uv sync)\n"
)


def uv(*args: str) -> None:
    subprocess.run([*UV, *args], check=True, capture_output=True, text=True, timeout=300)


def build_wheel(project: Path, out: Path) -> Path:
    uv("build", "--wheel", "--quiet", "--out-dir", str(out), str(project))
    (wheel,) = out.glob("*.whl")
    return wheel


def make_venv(folder: Path, *requirements: str) -> Path:
    """A fresh venv of this Python with only `requirements` (and their dependencies)."""
    uv("venv", "--quiet", "--python", sys.executable, str(folder))
    python = folder / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", str(python), *requirements)
    return folder / "bin"


def run(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Nothing of this checkout on the path: the venv's own install answers.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=program.parent,
    )


@pytest.fixture(scope="module")
def product_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("product-wheel"))


@pytest.fixture(scope="module")
def plain_install(product_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a venv where `pip install azpytest` (no extras) ran."""
    return make_venv(tmp_path_factory.mktemp("plain") / "venv", str(product_wheel))


def test_the_product_wheel_holds_no_sandbox_code(product_wheel: Path) -> None:
    names = zipfile.ZipFile(product_wheel).namelist()
    assert "azpytest/cli.py" in names
    assert [name for name in names if "sandbox" in name] == []


def test_sandbox_without_the_extra_names_the_install_command(plain_install: Path) -> None:
    result = run(plain_install / "azpytest", "sandbox", "--", "true")
    assert (result.returncode, result.stderr, result.stdout) == (2, HINT, "")


def test_the_plain_install_runs(plain_install: Path) -> None:
    result = run(plain_install / "azpytest", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"azpytest {importlib.metadata.version('azpytest')}\n"


def test_with_the_sandbox_extra_the_sandbox_runs(product_wheel: Path, tmp_path: Path) -> None:
    sandbox_wheel = build_wheel(ROOT / "scripts" / "azpytest_sandbox", tmp_path / "wheel")
    names = zipfile.ZipFile(sandbox_wheel).namelist()
    assert {"azpytest_sandbox/__init__.py", "azpytest_sandbox/server.py"} <= set(names)
    assert [name for name in names if not name.startswith("azpytest_sandbox")] == []
    # The extra names azpytest-sandbox; the local wheel stands in for PyPI's.
    bin_dir = make_venv(
        tmp_path / "venv", f"azpytest[sandbox] @ {product_wheel}", str(sandbox_wheel)
    )
    result = run(bin_dir / "azpytest", "sandbox", "--", "true")
    assert (result.returncode, result.stderr) == (0, "")


def test_the_sandbox_imports_nothing_from_the_product() -> None:
    # Its own distribution: it must install and run without azpytest.
    imported: set[tuple[str, str]] = set()
    for module in (ROOT / "scripts" / "azpytest_sandbox").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {(module.name, alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add((module.name, node.module))
    assert imported
    assert [(f, name) for f, name in imported if name.split(".")[0] == "azpytest"] == []

"""Where a failed test failed, and how to rerun it, recorded from pytest's own objects.

A failed test's JUnit entry gets two properties (only when pytest writes JUnit):
`azpytest.location`, the test file from the repository root and the line (the last frame of
the traceback inside the test's own file: the failing assertion, or the test's call into the
helper that failed; else the test's definition), and `azpytest.rerun-id`, the node id as a
rerun from the same folder takes it. The report reads them, so annotations land on the
pull request's diff whatever `working-directory`, `--tb` style or rootdir; traceback text
is only the fallback for JUnit files written without the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from azpytest.report.junit import LOCATION, RERUN_ID

_ROOT = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and getattr(item.config.option, "xmlpath", None):
        recorded = {name for name, _ in item.user_properties}
        for name, value in _pointers(item, call):
            if name not in recorded:
                # A call failure goes through the item to the teardown report, which is the
                # one junitxml reads properties from; a teardown failure is that report.
                item.user_properties.append((name, value))
                if report.when == "teardown":
                    report.user_properties.append((name, value))
    return report


def _pointers(item: pytest.Item, call: pytest.CallInfo[None]) -> list[tuple[str, str]]:
    path = Path(item.path)
    line = _failing_line(path, call)
    if line is None:
        defined = item.location[1]
        line = defined + 1 if defined is not None else None  # pytest counts from 0
    root = _repository_root(item.config)
    where = _relative(path, root)
    pointers = [(LOCATION, f"{where}:{line}" if line else where)]
    invoked = item.config.invocation_params.dir
    _, _, rest = item.nodeid.partition("::")
    rerun = _relative(path, invoked)
    pointers.append((RERUN_ID, f"{rerun}::{rest}" if rest else rerun))
    return pointers


def _failing_line(path: Path, call: pytest.CallInfo[None]) -> int | None:
    """1-based line of the last traceback entry inside the test's own file."""
    if call.excinfo is None:
        return None
    found = None
    for entry in call.excinfo.traceback:
        if Path(entry.path) == path:
            found = entry.lineno + 1  # 0-based in pytest's traceback
    return found


def _repository_root(config: pytest.Config) -> Path:
    """The workflow's checkout (GITHUB_WORKSPACE), else the nearest folder above the rootdir
    holding `.git`, else the rootdir: what annotation paths are relative to."""
    cached = config.stash.get(_ROOT, None)
    if cached is not None:
        return cached
    rootdir = config.rootpath.resolve()
    root = rootdir
    workspace = os.environ.get("GITHUB_WORKSPACE")
    checkout = Path(workspace).resolve() if workspace else None
    if checkout is not None and (checkout == rootdir or checkout in rootdir.parents):
        root = checkout
    else:
        for folder in (rootdir, *rootdir.parents):
            if (folder / ".git").exists():
                root = folder
                break
    config.stash[_ROOT] = root
    return root


def _relative(path: Path, base: Path) -> str:
    """`path` from `base`, forward slashes (`../` where it lies outside)."""
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()

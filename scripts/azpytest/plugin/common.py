"""What every fixture family shares: the skip-or-fail rule, failing with a diagnosis, the
record `azpytest prepare` left, and the masked debug log of `--azpytest-debug`."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from azpytest import errors

if TYPE_CHECKING:
    from azpytest.masking import Scrubber

# The loggers `--azpytest-debug` turns up: azure-core's HTTP log, the credentials, ours.
DEBUG_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azpytest")


def unavailable(what: str, fix: str) -> NoReturn:
    """Skip locally, fail in CI, with the same one-line reason: what is missing; the fix."""
    skip_or_fail(errors.unavailable(what, fix))


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally, fail in CI (CI=true), with the same one-line reason."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(errors.failing_in_ci(reason), pytrace=False)
    pytest.skip(reason)


def fail_diagnosis(exc: errors.Diagnosis) -> NoReturn:
    """Fail the test with the diagnosis's whole text (what, cause, fix), no traceback."""
    pytest.fail(exc.text(), pytrace=False)


def setting(name: str) -> str | None:
    """An input the plugin reads from the environment (the table in inputs.py), checked: a
    bad value fails the test that needs it with one line naming the variable."""
    from azpytest.inputs import InputError, from_environment

    try:
        return from_environment(name, os.environ)
    except InputError as exc:
        problem = str(exc)
    pytest.fail(errors.fixture_failed(problem), pytrace=False)


def prepared() -> dict[str, Any]:
    """What `azpytest prepare` recorded for this run (names only), or {}."""
    from azpytest.rundir import RunDir

    run_dir = RunDir.from_environment(os.environ)
    return run_dir.read_prepared() if run_dir is not None else {}


def debug_logging() -> None:
    """Send the debug loggers to stderr, every masked value replaced by ***."""
    from azpytest.masking import Scrubber

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MaskFilter(Scrubber.from_environment(os.environ)))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)


class _MaskFilter(logging.Filter):
    """Replace every value azpytest masked (the prepared secrets) in a log record."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self._scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        if self._scrubber:
            record.msg, record.args = self._scrubber.text(record.getMessage()), ()
        return True

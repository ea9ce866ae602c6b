"""In CI, under the token broker, no credential-chain variable a suite loads itself (a `.env`
read by its conftest, python-dotenv or pytest-dotenv) reaches its tests.

`run` starts pytest without them (`broker.child_env`), and the `.env` azpytest reads loads
none of them in CI (`settings.DOTENV_CI_WITHHELD`); a suite's own loader then puts a
template's `AZURE_CLIENT_SECRET=` back, and DefaultAzureCredential fails on the empty secret
before it reaches the broker. They are removed again once the conftests are loaded, after
collection and before each test's setup, with one line naming each (never a value).
"""

from __future__ import annotations

import os
import sys

import pytest

_WARNED = pytest.StashKey[set[str]]()


def _under_the_broker() -> bool:
    from azpytest.kubetoken import BROKER_VARIABLE

    endpoint = os.environ.get("IDENTITY_ENDPOINT")
    return (
        os.environ.get("GITHUB_ACTIONS") == "true"
        and bool(endpoint)
        and os.environ.get(BROKER_VARIABLE) == endpoint
    )


def remove_loaded(config: pytest.Config) -> None:
    if not any(name.startswith("AZURE_") for name in os.environ) or not _under_the_broker():
        return
    from azpytest import errors
    from azpytest.settings import DOTENV_CI_WITHHELD

    found = [name for name in DOTENV_CI_WITHHELD if name in os.environ]
    for name in found:
        del os.environ[name]
    warned = config.stash.setdefault(_WARNED, set())
    new = [name for name in found if name not in warned]
    if not new:
        return
    warned.update(new)
    line = errors.suite_loaded_credential_variables(new)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr, flush=True)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    remove_loaded(config)  # conftests at the root, pytest-dotenv: loaded by now


def pytest_collection_finish(session: pytest.Session) -> None:
    remove_loaded(session.config)  # every conftest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    remove_loaded(item.config)  # a loader run by a fixture of an earlier test

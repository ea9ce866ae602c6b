"""The azpytest pytest plugin: fixtures holding real, token-authenticated connections.

Loaded into every pytest run of an environment where azpytest is installed (entry point
`pytest11`), so it is inert until a test asks for one of its fixtures, and it imports
nothing heavy at the top: each fixture imports what it needs when first requested.

Where a fixture's configuration is missing it skips with the reason and the fix on a
laptop, and FAILS in CI (`CI=true`): a suite that silently skips its integration tests in
CI is a suite that silently stopped testing.

This module holds the options and the marker; each fixture family is a plugin module of
its own, which pytest registers with this one (`pytest_plugins` below), so a conftest
overrides any fixture by its name as usual.
"""

from __future__ import annotations

import os

import pytest

from azpytest.plugin.artifacts import ArtifactCollector
from azpytest.plugin.common import debug_logging, unavailable
from azpytest.plugin.databases import RunSchema
from azpytest.plugin.dbt import DbtRunner
from azpytest.plugin.identity import PreparedSecrets

__all__ = ["ArtifactCollector", "DbtRunner", "PreparedSecrets", "RunSchema", "unavailable"]

pytest_plugins = [
    "azpytest.plugin.artifacts",  # the report hook and artifact_collector
    "azpytest.plugin.identity",  # azure_credential, azure_token, keyvault, keyvault_secret
    "azpytest.plugin.kube",  # kubeconfig, kube_client, kube_namespace, real_aks_cluster
    "azpytest.plugin.databases",  # azpytest_connections, pg_*, db_connection, azure_sql_*
    "azpytest.plugin.dbt",  # dbt
    "azpytest.plugin.pointers",  # where a failed test failed, and its rerun id, in JUnit
    "azpytest.plugin.credential_env",  # in CI no .env credential variable under the broker
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("azpytest", "azpytest: Azure integration tests")
    group.addoption(
        "--azpytest-debug",
        action="store_true",
        default=False,
        help="log azure-core HTTP requests and answers (headers redacted, secrets masked)",
    )
    parser.addini("azpytest_migrations", "folder of .sql files pg_schema applies once, in order")
    parser.addini("azpytest_dbt_project", "dbt project folder the dbt fixture runs in")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: the test uses real Azure or database resources (azpytest fixtures)",
    )
    from azpytest.inputs import InputError, flag_of

    try:
        debug = flag_of("debug", os.environ)  # the action's debug input, or RUNNER_DEBUG
    except InputError as exc:
        raise pytest.UsageError(f"azpytest: {exc}") from None
    on = bool(debug or config.getoption("azpytest_debug", default=False))
    config.stash[_DEBUG] = on
    if on:
        debug_logging()


_DEBUG = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def debug_mode(pytestconfig: pytest.Config) -> bool:
    """Whether debug is on: `--azpytest-debug`, the action's `debug` input, or a job rerun with
    debug logging (RUNNER_DEBUG). Suites that had their own `debug_mode` fixture keep their
    `if debug_mode:` as it was."""
    return pytestconfig.stash.get(_DEBUG, False)

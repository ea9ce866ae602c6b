"""Fixtures for the integration tests: a real, throwaway PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from azpytest.sandbox.postgres import PostgresUnavailable, TempPostgres, find_bindir


def _missing(reason: str) -> NoReturn:
    """Fail on CI (the binaries must be there), skip on a developer machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but PostgreSQL is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_bindir() -> Path:
    """The PostgreSQL binaries folder; skips (or fails on CI) when PostgreSQL is absent."""
    try:
        return find_bindir()
    except PostgresUnavailable as exc:
        _missing(str(exc))


@pytest.fixture(scope="session")
def postgres(postgres_bindir: Path) -> Iterator[TempPostgres]:
    """A started PostgreSQL server shared by the session; stopped and deleted at the end."""
    pg = TempPostgres(bindir=postgres_bindir)
    try:
        pg.start()
    except PostgresUnavailable as exc:
        _missing(str(exc))
    try:
        yield pg
    finally:
        pg.stop()

"""Fixtures every test layer shares: the sandbox (stand-ins of the remote services)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from azpytest.sandbox import Sandbox, build_scenario


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes from scenario data (merged over the default world); all stop at the end."""
    started: list[Sandbox] = []

    def make(scenario: dict[str, Any] | None = None, **kwargs: Any) -> Sandbox:
        sandbox = Sandbox(build_scenario(scenario or {}), **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def use_sandbox(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sandbox], Sandbox]:
    """Point this process's environment at a sandbox, as a workflow step's would be."""

    def use(sandbox: Sandbox) -> Sandbox:
        for name in (
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_USERNAME",
            "IDENTITY_ENDPOINT",
            "MSI_ENDPOINT",
            "HTTP_PROXY",
            "http_proxy",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        return sandbox

    return use


@pytest.fixture
def sandbox_env(sandbox: Sandbox, use_sandbox: Callable[[Sandbox], Sandbox]) -> Sandbox:
    """The default sandbox, with this process's environment pointed at it."""
    return use_sandbox(sandbox)

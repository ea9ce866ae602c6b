"""Tokens keep renewing for a run of any length: each Entra request gets a fresh GitHub token."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from azure.keyvault.secrets import SecretClient

from azpytest import identity, settings
from azpytest.github import Workflow
from azpytest_sandbox import Sandbox


def test_twenty_seconds_of_reads_with_5s_tokens_and_3s_assertions(
    make_sandbox: Callable[..., Sandbox], use_sandbox: Callable[[Sandbox], Sandbox], tmp_path: Path
) -> None:
    sandbox = use_sandbox(make_sandbox({"token_lifetime_s": 5, "github": {"token_lifetime_s": 3}}))
    environ = {**os.environ, "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(tmp_path)}
    workflow = Workflow(environ, io.StringIO())
    who = identity.build(settings.load({}, environ), workflow)
    vault = SecretClient("https://kv-azpytest.vault.azure.net", who)
    reads = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert vault.get_secret("pg-host").value == "127.0.0.1"
        reads += 1
    assert reads > 20
    # Renewed throughout: many Entra tokens, each from its own fresh GitHub assertion,
    # and not one refusal.
    token_requests = sandbox.log.select(service="entra", method="POST")
    assert len(token_requests) >= 4
    assert all(e.status == 200 for e in token_requests)
    assert who.assertion is not None and who.assertion.requests == len(token_requests)
    # A token that expires in flight earns a 401 that the SDK answers with a fresh token;
    # the reads above never saw it.
    assert all(e.status in (200, 401) for e in sandbox.log.select(service="keyvault"))

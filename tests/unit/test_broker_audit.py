"""The broker's audit log: one line per fresh fetch and per refusal, written at once; cached
hits counted into one line per run of them ("count"), written at the next other line, after
a time bound, and when the broker stops; the file stays 0600. A real broker on loopback, a
stand-in credential (no Entra)."""

from __future__ import annotations

import http.client
import json
import os
import stat
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo, TokenRequestOptions

from azpytest.broker import API_VERSION, HEADER, PATH, Broker

VAULT = "https://vault.azure.net"
ARM = "https://management.azure.com"


class Source:
    """Hour-long tokens, one per fetch."""

    def __init__(self) -> None:
        self.calls = 0
        self.principal: dict[str, str] = {}

    def __call__(self) -> Source:
        return self

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        self.calls += 1
        return AccessTokenInfo(f"token-{self.calls}", int(time.time()) + 3600)

    def close(self) -> None:
        pass


class Client:
    """One kept-alive connection to the broker, as an SDK client keeps one."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connection = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=30)

    def ask(self, resource: str, header: str | None = None) -> int:
        query = urllib.parse.urlencode({"api-version": API_VERSION, "resource": resource})
        self.connection.request(
            "GET", f"{PATH}?{query}", headers={HEADER: header or self.broker.header}
        )
        answer = self.connection.getresponse()
        answer.read()
        return answer.status


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "run" / "audit.jsonl"


@pytest.fixture
def broker(log: Path) -> Iterator[Broker]:
    log.parent.mkdir()
    # A time bound longer than any test: only the other lines and the stop write cached hits.
    served = Broker(Source(), client_id=None, audit_path=log, audit_flush_s=3600).start()
    try:
        yield served
    finally:
        served.stop()


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def shape(entries: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    return [(e["resource"], e["outcome"], e["status"], e.get("count", 1)) for e in entries]


def test_cached_hits_are_one_line_per_run_written_at_the_next_other_line_and_at_stop(
    broker: Broker, log: Path
) -> None:
    client = Client(broker)
    assert client.ask(VAULT) == 200  # fresh
    for _ in range(5):
        assert client.ask(VAULT) == 200  # cached
    assert client.ask(ARM) == 200  # fresh: the five cached hits are written before it
    for _ in range(2):
        assert client.ask(ARM) == 200
        assert client.ask(VAULT) == 200
    assert client.ask(VAULT, header="guessed") == 401  # a refusal: written at once
    for _ in range(3):
        assert client.ask(VAULT) == 200
    written = lines(log)
    assert shape(written) == [
        (VAULT, "fresh", 200, 1),
        (VAULT, "cached", 200, 5),
        (ARM, "fresh", 200, 1),
        (ARM, "cached", 200, 2),
        (VAULT, "cached", 200, 2),
        (VAULT, "unauthorized", 401, 1),
    ]
    broker.stop()
    after = lines(log)
    assert after[: len(written)] == written
    assert shape(after[len(written) :]) == [(VAULT, "cached", 200, 3)]
    # A line of cached hits says when the run began and ended, and keeps the other fields.
    run = after[1]
    assert set(run) == {
        "time", "until", "source", "resource", "client_id", "status", "outcome", "ms",
        "expires_on", "count",
    }  # fmt: skip
    assert run["time"] <= run["until"] and run["source"] == "broker"
    assert run["expires_on"] == after[0]["expires_on"]
    assert set(after[0]) == set(run) - {"until", "count"}
    assert sum(e.get("count", 1) for e in after) == 15
    assert broker.summary() == (
        "azpytest: token broker: 15 request(s), 14 served (2 fetched from Entra ID, 12 from its "
        "cache), 1 refused"
    )


def test_a_single_cached_hit_is_a_line_as_before(broker: Broker, log: Path) -> None:
    client = Client(broker)
    client.ask(VAULT)
    client.ask(VAULT)
    broker.stop()
    assert [(e["outcome"], "count" in e, "until" in e) for e in lines(log)] == [
        ("fresh", False, False),
        ("cached", False, False),
    ]


def test_the_time_bound_writes_cached_hits_while_the_broker_runs(log: Path) -> None:
    log.parent.mkdir()
    broker = Broker(Source(), client_id=None, audit_path=log, audit_flush_s=0.05).start()
    try:
        client = Client(broker)
        for _ in range(4):
            client.ask(VAULT)
        deadline = time.monotonic() + 30
        while len(log.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # waits for a line; asserts nothing about time
        assert shape(lines(log)) == [(VAULT, "fresh", 200, 1), (VAULT, "cached", 200, 3)]
    finally:
        broker.stop()


def test_the_audit_log_stays_0600_and_keeps_what_prepare_wrote(broker: Broker, log: Path) -> None:
    log.write_text('{"vault": "kv", "secret": "pg-host", "outcome": "read"}\n')
    os.chmod(log, 0o644)  # as a wider umask would leave it
    Client(broker).ask(VAULT)
    broker.stop()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    first, second = lines(log)
    assert first == {"vault": "kv", "secret": "pg-host", "outcome": "read"}
    assert (second["resource"], second["outcome"]) == (VAULT, "fresh")


def test_a_new_audit_log_is_created_0600(broker: Broker, log: Path) -> None:
    old = os.umask(0)  # the widest: nothing narrows the mode the file is created with
    try:
        Client(broker).ask(VAULT)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_request_answered_after_the_stop_is_written_at_once(log: Path) -> None:
    log.parent.mkdir()
    broker = Broker(Source(), client_id=None, audit_path=log, audit_flush_s=3600)
    broker.stop()  # never started: nothing pending, the file not made
    assert not log.exists()
    broker.answer(f"{PATH}?api-version={API_VERSION}&resource={VAULT}", broker.header)
    broker.answer(f"{PATH}?api-version={API_VERSION}&resource={VAULT}", broker.header)
    assert shape(lines(log)) == [(VAULT, "fresh", 200, 1), (VAULT, "cached", 200, 1)]

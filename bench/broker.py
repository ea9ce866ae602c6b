"""The token broker's cost, each figure beside its anchor from the same run:

- throughput of cached tokens (the bulk of a long run) against a bare stdlib `http.server`
  answering the same bytes, from clients in another process (keep-alive connections, as SDK
  clients keep them), the arms interleaved; the ratio is the broker's share of the bare
  server's rate (its audit log on);
- a burst of BURST clients connecting at once: the worst and median latency, the broker's
  (listen backlog 128) beside the bare server's (the stdlib's backlog of 5);
- a cached token's latency, and a fresh one's against the job's credential alone (a GitHub
  assertion and the Entra request, at the sandbox's LATENCY_MS per answer): the broker's own
  cost on a fresh token.

    .venv/bin/python bench/broker.py [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from azpytest import broker, identity, settings
from azpytest.github import Workflow
from azpytest_sandbox import Sandbox

LATENCY_MS = 20
CLIENTS = 4  # concurrent keep-alive connections of the throughput arms
BURST = 32
FRESH = 20

# Runs in its own process: `throughput` prints requests per second over CLIENTS kept-alive
# connections; `burst` prints each of BURST new connections' latency (ms), all sent at once.
CLIENT = """
import http.client, json, sys, threading, time

mode, port, target, header, count = sys.argv[1:6]
port, count = int(port), int(count)
headers = {"X-IDENTITY-HEADER": header, "Metadata": "true"}


def ask(connection):
    connection.request("GET", target, headers=headers)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status


if mode == "throughput":
    clients = int(sys.argv[6])
    connections = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(clients)
    ]
    for connection in connections:
        ask(connection)  # connected, warm
    start = threading.Barrier(clients + 1)

    def work(connection):
        start.wait()
        for _ in range(count):
            ask(connection)

    threads = [threading.Thread(target=work, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    print(json.dumps(clients * count / (time.perf_counter() - began)))
else:
    start = threading.Barrier(count)
    latencies = [0.0] * count

    def one(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        began = time.perf_counter()
        ask(connection)
        latencies[n] = (time.perf_counter() - began) * 1000
        connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(latencies))
"""


class Bare(ThreadingHTTPServer):
    """The anchor: a stdlib server answering every GET with the bytes the broker sends for a
    cached token (same status line, headers and body), nothing else."""

    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        self.body = body
        super().__init__(("127.0.0.1", 0), _BareHandler)


class _BareHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def client(*args: object) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(done.stdout)


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per connection and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each arm")
    args = parser.parse_args(argv)
    with Sandbox(latency_ms=LATENCY_MS) as sandbox, tempfile.TemporaryDirectory() as run_dir:
        sandbox.apply(os.environ)  # the proxy and CA bundle, as a workflow step has them
        environ = {**sandbox.env, "GITHUB_ACTIONS": "true", "AZPYTEST_RUN_DIR": run_dir}
        loaded = settings.load({}, environ)
        workflow = Workflow(environ, out=io.StringIO())
        with broker.for_settings(loaded, workflow) as served:
            session = requests.Session()
            headers = {"X-IDENTITY-HEADER": served.header}
            query = {"api-version": broker.API_VERSION, "resource": "https://vault.azure.net"}
            target = f"{broker.PATH}?{urllib.parse.urlencode(query)}"

            def ask(resource: str) -> requests.Response:
                params = {"api-version": broker.API_VERSION, "resource": resource}
                answer = session.get(served.endpoint, params=params, headers=headers, timeout=30)
                assert answer.status_code == 200, answer.text
                return answer

            def direct(resource: str) -> None:
                who = identity.build(loaded, workflow)
                try:
                    who.get_token_info(f"{resource}/.default")
                finally:
                    who.close()

            for i in range(3):  # imports, first connections
                ask(f"api://azpytest-bench-warm-{i}")
                direct(f"api://azpytest-bench-warm-direct-{i}")
            body = ask("https://vault.azure.net").content
            cached = [timed(lambda: ask("https://vault.azure.net")) for _ in range(500)]
            fresh, round_trip = [], []
            for i in range(FRESH):  # interleaved, so both see the same machine
                fresh.append(timed(lambda i=i: ask(f"api://azpytest-bench-{i}")))
                round_trip.append(timed(lambda i=i: direct(f"api://azpytest-bench-direct-{i}")))

            bare = Bare(body)
            threading.Thread(target=bare.serve_forever, daemon=True).start()
            try:
                rates: dict[str, list[float]] = {"broker": [], "bare": []}
                bursts: dict[str, list[float]] = {"broker": [], "bare": []}
                ports = {"broker": served.port, "bare": int(bare.server_address[1])}
                for _ in range(args.rounds):
                    for arm, port in ports.items():
                        rates[arm].append(
                            client(
                                "throughput", port, target, served.header, args.requests, CLIENTS
                            )
                        )
                    for arm, port in ports.items():
                        bursts[arm].extend(client("burst", port, target, served.header, BURST))
            finally:
                bare.shutdown()
                bare.server_close()
            asked = sum(served.counts.values())
        audit = Path(run_dir, "audit.jsonl").read_text().splitlines()

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    broker_rate, bare_rate = statistics.median(rates["broker"]), statistics.median(rates["bare"])
    print(f"throughput, cached tokens over {CLIENTS} kept-alive connections, medians of "
          f"{args.rounds} interleaved rounds of {CLIENTS * args.requests} requests:")  # fmt: skip
    print(f"    bare http.server, same bytes: {bare_rate:8.0f} requests/s")
    print(
        f"    broker (audit log on):        {broker_rate:8.0f} requests/s   "
        f"{broker_rate / bare_rate:.2f}x the bare server's"
    )
    print(f"    audit log: {len(audit)} lines for {asked} requests")
    print(f"burst of {BURST} connections at once, {args.rounds} rounds:")
    for arm, label in (
        ("bare", "bare http.server (backlog 5)"),
        ("broker", "broker (backlog 128)"),
    ):
        worst, median = max(bursts[arm]), statistics.median(bursts[arm])
        print(f"    {label:<30} worst {worst:7.1f} ms, median {median:6.1f} ms")
    print(
        f"cached token (one client, requests): median {statistics.median(cached):.2f} ms, "
        f"p95 {p95(cached):.2f} ms over {len(cached)} requests"
    )
    overhead = statistics.median(fresh) - statistics.median(round_trip)
    print(
        f"fresh token: median {statistics.median(fresh):.1f} ms against the credential alone "
        f"(GitHub assertion + Entra token at {LATENCY_MS} ms per answer) "
        f"{statistics.median(round_trip):.1f} ms: the broker's own cost {overhead:+.1f} ms, "
        f"median of {FRESH} paired"
    )


if __name__ == "__main__":
    main()

"""The broker's rules without a network: when a token is renewed, what clients are told, what
concurrent and failing requests get, which variables the command loses, and the input."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo, TokenRequestOptions

from azpytest import errors
from azpytest.broker import Broker, child_env, hold
from azpytest.github import Workflow
from azpytest.settings import InputError, load


@pytest.mark.parametrize(
    ("life", "renew_after", "told"),
    [
        (3600, 3240, 3540),  # an hour: renewed with 10 % left, clients told 60 s early
        (300, 240, 270),  # five minutes: renewed with 60 s left, told 30 s early
        (5, 2.5, 3),  # five seconds: renewed half-way, told 1.25 s early (whole seconds)
        (1, 0.5, 0),  # one second: still renewed half-way
    ],
)
def test_renewal_and_reported_expiry_follow_the_token_life(
    life: float, renew_after: float, told: int
) -> None:
    held = hold("t", 1000 + life, 1000)
    assert held.renew_at == 1000 + renew_after
    assert held.reported == 1000 + told
    assert held.reported <= held.expires_on


def test_a_token_expired_on_arrival_is_handed_on_but_never_cached() -> None:
    held = hold("t", 990, 1000)
    assert (held.renew_at, held.reported) == (1000, 990)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A stand-in for identity.Identity: tokens of `life` seconds, or a diagnosis."""

    def __init__(self, clock: Clock, life: float = 5, fail: errors.Diagnosis | None = None):
        self.clock = clock
        self.life = life
        self.fail = fail
        self.calls = 0
        self.principal: dict[str, str] = {}
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> Source:
        return self

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        return AccessTokenInfo(f"token-{self.calls}", int(self.clock() + self.life))

    def close(self) -> None:
        pass


REFUSAL = errors.Diagnosis(
    kind="entra-refused", what="Entra ID said no.", cause="a test.", fix="none."
)


def make(life: float = 5) -> tuple[Broker, Source, Clock]:
    clock = Clock()
    source = Source(clock, life)
    return Broker(source, client_id=None, clock=clock), source, clock


def test_a_token_is_served_from_the_cache_until_it_must_be_renewed() -> None:
    broker, source, clock = make(life=5)
    assert broker.token("r")[1] == "fresh"
    clock.now += 2.4
    held, outcome = broker.token("r")
    assert (held.token, outcome) == ("token-1", "cached")
    assert held.expires_on - clock.now >= 2.5
    clock.now += 0.2  # 2.4 s left: less than half its life
    held, outcome = broker.token("r")
    assert (held.token, outcome, source.calls) == ("token-2", "fresh", 2)


def test_each_resource_has_its_own_token() -> None:
    broker, _, _ = make()
    assert broker.token("a")[0].token == "token-1"
    assert broker.token("b")[0].token == "token-2"
    assert broker.token("a")[1] == "cached"


def test_requests_waiting_on_a_failed_fetch_share_its_answer() -> None:
    broker, source, clock = make()
    source.fail = REFUSAL
    source.release.clear()
    outcomes: list[str] = []

    def ask() -> None:
        try:
            broker.token("r")
        except Exception as exc:
            outcomes.append(type(exc).__name__ + f" {getattr(exc, 'status', '')}")

    first = threading.Thread(target=ask)
    first.start()
    assert source.entered.wait(10)
    others = [threading.Thread(target=ask) for _ in range(5)]
    for thread in others:
        thread.start()
    source.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert outcomes == ["Refused 400"] * 6
    assert source.calls == 1
    clock.now += 0.001
    with pytest.raises(Exception, match="Entra ID said no"):
        broker.token("r")  # a later request tries again
    assert source.calls == 2


def test_a_failed_renewal_serves_the_old_token_while_it_is_good() -> None:
    broker, source, clock = make(life=3600)
    broker.token("r")
    clock.now += 3300  # inside the renewal margin
    source.fail = REFUSAL
    held, outcome = broker.token("r")
    assert (held.token, outcome) == ("token-1", "stale")
    assert broker.token("r")[1] == "cached"  # no Entra request for the next few seconds
    assert source.calls == 2
    clock.now += 6
    assert broker.token("r")[1] == "stale"
    assert source.calls == 3
    clock.now = held.reported  # the clients would take it for expired now
    with pytest.raises(Exception, match="Entra ID said no"):
        broker.token("r")


def answer(broker: Broker, query: str, header: str | None = "") -> tuple[int, dict[str, Any]]:
    return broker.answer(f"/msi/token?{query}", broker.header if header == "" else header)


def test_requests_the_endpoint_refuses() -> None:
    clock = Clock()
    broker = Broker(Source(clock), client_id="3F1E2D4C-6B5A-4978-8A9B-0C1D2E3F4A5B", clock=clock)
    ok = "api-version=2019-08-01&resource=https://vault.azure.net"
    assert answer(broker, ok)[0] == 200
    assert answer(broker, ok + "&client_id=3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b")[0] == 200
    assert answer(broker, ok, header=None)[0] == 401
    assert answer(broker, ok, header=broker.header + "x")[0] == 401
    assert answer(broker, "api-version=2017-09-01&resource=https://vault.azure.net")[0] == 400
    assert answer(broker, "api-version=2019-08-01")[0] == 400
    status, body = answer(broker, ok + "&object_id=b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e")
    assert status == 400
    assert "asks for object_id=b7c6d5e4-f3a2-4b1c-9d8e-7f6a5b4c3d2e" in body["message"]
    assert broker.answer("/other?" + ok, broker.header)[0] == 404
    assert dict(broker.counts) == {
        "fresh": 1,
        "cached": 1,
        "unauthorized": 2,
        "bad-request": 4,
    }


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        # The network failed: the client may ask again (issue 14: not a permanent 500/400).
        (ConnectionError("login.microsoftonline.com: connection refused"), 503),
        (TimeoutError("login.microsoftonline.com: connection refused"), 503),
        # Anything else is a failure of the broker's own, still named.
        (RuntimeError("login.microsoftonline.com: connection refused"), 500),
    ],
)
def test_an_unknown_failure_names_it_and_a_network_one_is_transient(
    raised: Exception, status: int
) -> None:
    clock = Clock()

    class Broken(Source):
        def get_token_info(
            self, *scopes: str, options: TokenRequestOptions | None = None
        ) -> AccessTokenInfo:
            raise raised

    broker = Broker(Broken(clock), client_id=None, clock=clock)
    answered, body = answer(broker, "api-version=2019-08-01&resource=https://vault.azure.net")
    assert answered == status
    assert body["message"] == (
        "azpytest token broker: no token for resource https://vault.azure.net: "
        f"{type(raised).__name__}: login.microsoftonline.com: connection refused"
    )


def test_a_transient_entra_failure_is_a_503_a_refusal_stays_400() -> None:
    clock = Clock()
    said = {"transient": True}

    class Flaky(Source):
        def get_token_info(
            self, *scopes: str, options: TokenRequestOptions | None = None
        ) -> AccessTokenInfo:
            if said["transient"]:
                raise errors.service_unavailable(
                    service=errors.ENTRA,
                    host="login.microsoftonline.com",
                    said="HTTP 503 AADSTS90033; gave up after 3 tries in 40.0 s (deadline 40 s)",
                    environ={},
                )
            raise errors.entra_refused(
                "AADSTS700016: Application not found",
                tenant_id="t",
                client_id="c",
                claims={},
                audience="api://AzureADTokenExchange",
            )

    broker = Broker(Flaky(clock), client_id=None, clock=clock)
    query = "api-version=2019-08-01&resource=https://vault.azure.net"
    status, body = answer(broker, query)
    assert status == 503
    assert body["message"].startswith(
        "azpytest token broker: no token for resource https://vault.azure.net. Entra ID "
        "(login.microsoftonline.com) did not answer usably: HTTP 503 AADSTS90033"
    )
    said["transient"] = False
    clock.now += 1
    status, body = answer(broker, query)
    assert status == 400
    assert "AADSTS700016" in body["message"]


def test_the_header_is_masked_before_anything_else() -> None:
    out = io.StringIO()
    broker = Broker(
        Source(Clock()), client_id=None, workflow=Workflow({"GITHUB_ACTIONS": "true"}, out)
    )
    assert out.getvalue() == f"::add-mask::{broker.header}\n"
    assert len(broker.header) >= 40


def test_the_command_loses_what_would_shadow_the_broker(tmp_path: Any) -> None:
    settings = load(
        {},
        {
            "GITHUB_ACTIONS": "true",
            "AZURE_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
            "AZURE_CLIENT_ID": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
            "AZPYTEST_RUN_DIR": str(tmp_path),
        },
    )
    out = io.StringIO()
    workflow = Workflow({"GITHUB_ACTIONS": "true"}, out)
    broker = Broker(Source(Clock()), client_id=settings.client_id)
    broker.start()
    endpoint = broker.endpoint
    try:
        env = child_env(
            {
                "AZURE_CLIENT_SECRET": "s",
                "AZURE_FEDERATED_TOKEN_FILE": "/tmp/t",
                "IDENTITY_SERVER_THUMBPRINT": "x",
                "HTTP_PROXY": "http://proxy:3128",
                "NO_PROXY": "example.com",
                "PATH": "/bin",
            },
            broker,
            settings,
            workflow,
        )
    finally:
        broker.stop()
    assert env == {
        "HTTP_PROXY": "http://proxy:3128",
        "NO_PROXY": "example.com,127.0.0.1",
        "no_proxy": "127.0.0.1",
        "PATH": "/bin",
        "IDENTITY_ENDPOINT": endpoint,
        "IDENTITY_HEADER": broker.header,
        "AZPYTEST_BROKER_ENDPOINT": endpoint,  # kube-token's fast path (no Azure SDK import)
        "AZURE_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
        "AZURE_CLIENT_ID": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
    }
    assert out.getvalue() == (
        "::notice title=azpytest token broker::AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, "
        "IDENTITY_SERVER_THUMBPRINT removed from the command's environment: with them its "
        "DefaultAzureCredential would not use the token broker (set broker: false to keep them).\n"
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"GITHUB_ACTIONS": "true"}, True),
        ({}, False),
        ({"GITHUB_ACTIONS": "true", "AZPYTEST_BROKER": "false"}, False),
        ({"AZPYTEST_BROKER": "true"}, True),
        ({"GITHUB_ACTIONS": "true", "AZPYTEST_BROKER": ""}, True),  # an empty action input
    ],
)
def test_broker_input_defaults_to_on_in_actions_only(
    environ: dict[str, str], expected: bool, tmp_path: Any
) -> None:
    identity = {
        "AZPYTEST_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
        "AZPYTEST_CLIENT_ID": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
    }
    assert load({}, {**identity, **environ}).use_broker is expected
    assert load({"broker": False}, {**identity, **environ}).use_broker is False


def test_broker_input_must_be_true_or_false() -> None:
    with pytest.raises(InputError, match="broker: 'sometimes' is not true or false"):
        load({}, {"AZPYTEST_BROKER": "sometimes"})

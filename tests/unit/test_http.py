"""The timeout policy: the bounds of each request, and retries that never outlast the
deadline (a fake clock: no sleeps)."""

from __future__ import annotations

import pytest

from azpytest import http


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_bounds_are_at_most_a_third_of_the_deadline() -> None:
    assert (http.Timeouts().connect, http.Timeouts().read) == (10, 40 / 3)
    assert (http.Timeouts(90).connect, http.Timeouts(90).read) == (10, 20)
    assert (http.Timeouts(3).connect, http.Timeouts(3).read) == (1, 1)


def test_transient_answers_are_asked_again_honouring_retry_after() -> None:
    clock = Clock()
    answers = iter([http.Transient("HTTP 429", retry_after=3), http.Transient("HTTP 503")])

    def attempt(bounds: tuple[float, float]) -> str:
        assert bounds == (10, 40 / 3)
        answer = next(answers, None)
        if answer is not None:
            raise answer
        return "token"

    assert http.retrying(attempt, http.Timeouts(), clock=clock, sleep=clock.sleep) == "token"
    assert len(clock.slept) == 2
    assert clock.slept[0] >= 3  # Retry-After wins over a shorter backoff
    assert clock.slept[1] <= 1.0  # 0.5 s * 2**1 at most, jittered


def test_a_hung_service_gives_up_before_the_deadline_naming_the_bound() -> None:
    clock = Clock()
    timeouts = http.Timeouts(40)

    def attempt(bounds: tuple[float, float]) -> str:
        clock.now += bounds[1]  # waited the whole read bound
        raise http.Transient("no answer", bound=f"the read timeout of {bounds[1]:.3g} s")

    with pytest.raises(http.GaveUp) as caught:
        http.retrying(attempt, timeouts, clock=clock, sleep=clock.sleep)
    assert clock.now <= 40
    assert caught.value.tries == 2
    assert str(caught.value).startswith(
        "no answer (the read timeout of 13.3 s); gave up after 2 tries in "
    )
    assert str(caught.value).endswith(" s (deadline 40 s)")


def test_a_refusal_is_not_retried() -> None:
    calls = []

    def attempt(bounds: tuple[float, float]) -> str:
        calls.append(bounds)
        raise PermissionError("403")

    with pytest.raises(PermissionError):
        http.retrying(attempt, http.Timeouts(), sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_after_takes_seconds_only() -> None:
    assert http.retry_after({"Retry-After": "2"}) == 2
    assert http.retry_after({"retry-after": "0.5"}) == 0.5
    assert http.retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert http.retry_after({}) is None

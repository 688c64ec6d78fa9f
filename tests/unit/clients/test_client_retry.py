from __future__ import annotations

import pytest

from clients.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from clients.retry import RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Raises the given errors in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_delays_grow_exponentially_and_are_capped() -> None:
    policy = RetryPolicy(retries=6, base=0.1, factor=2.0, cap=0.5)
    assert [policy.delay(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_succeeds_after_transient_unavailability() -> None:
    clock = FakeClock()
    fn = Flaky(UnavailableError("down"), UnavailableError("still down"))
    assert RetryPolicy(retries=3, base=0.1).call(fn, sleep=clock.sleep) == "ok"
    assert fn.calls == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2])


def test_gives_up_after_the_last_retry_with_the_last_error() -> None:
    clock = FakeClock()
    errors = [UnavailableError(f"attempt {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(UnavailableError, match="attempt 3"):
        RetryPolicy(retries=3, base=0.1, cap=0.3).call(fn, sleep=clock.sleep)
    assert fn.calls == 4
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.3])
    assert clock.now == pytest.approx(0.6)


def test_zero_retries_means_one_attempt() -> None:
    clock = FakeClock()
    fn = Flaky(UnavailableError("down"))
    with pytest.raises(UnavailableError):
        RetryPolicy(retries=0).call(fn, sleep=clock.sleep)
    assert fn.calls == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad shape", status=400),
        NotFoundError("no such model", status=404),
        ServerError("boom", status=500),
        DeadlineExceededError("too slow"),
    ],
)
def test_non_retryable_errors_propagate_at_once(error: Exception) -> None:
    clock = FakeClock()
    fn = Flaky(error)
    with pytest.raises(type(error)):
        RetryPolicy(retries=3).call(fn, sleep=clock.sleep)
    assert fn.calls == 1 and clock.sleeps == []


def test_other_exceptions_are_not_swallowed() -> None:
    fn = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        RetryPolicy(retries=3).call(fn, sleep=FakeClock().sleep)
    assert fn.calls == 1


@pytest.mark.parametrize("kwargs", [{"retries": -1}, {"base": -0.1}, {"factor": 0.5}, {"cap": -1}])
def test_invalid_policies_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)

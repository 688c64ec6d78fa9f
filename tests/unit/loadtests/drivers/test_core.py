from __future__ import annotations

import asyncio

from loadtests.drivers import core
from loadtests.drivers.core import Failure


def test_percentile_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert core.percentile(values, 50) == 50.0
    assert core.percentile(values, 99) == 99.0
    assert core.percentile(values, 100) == 100.0
    assert core.percentile([7.0], 99) == 7.0
    assert core.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and core.percentile([1.0, 2.0], 99) == 2.0
    assert core.percentile([], 50) is None


def sender(answers):
    """A client whose n-th request takes 10 ms and comes back with ``answers(n)``."""
    n = 0

    async def send():
        nonlocal n
        n += 1
        await asyncio.sleep(0.01)
        return answers(n)

    return send


def test_answers_count_in_the_window_they_complete_in():
    result = asyncio.run(core.closed_loop([sender(lambda n: None)] * 2, 0.1, 0.3))
    # two clients, 10 ms a request, 0.3 s measured: about 60 answers, none from the warm-up
    assert result.concurrency == 2 and 30 <= result.requests <= 62 and result.errors == 0
    assert result.seconds == 0.3 and result.rps == result.requests / 0.3
    assert result.p50_ms is not None and 9 <= result.p50_ms <= result.p99_ms
    assert result.first_error is None and result.error_codes == {}


def test_failures_are_tallied_by_code_and_the_first_is_reported():
    def answers(n):
        return Failure("HTTP 503", f"HTTP 503 #{n}", backoff=False) if n % 2 else None

    result = asyncio.run(core.closed_loop([sender(answers)], 0.0, 0.3))
    assert result.errors == result.error_codes["HTTP 503"] > 5 and abs(result.requests - result.errors) <= 1
    assert result.first_error == "HTTP 503 #1"


def test_no_answer_backs_off_instead_of_spinning():
    result = asyncio.run(core.closed_loop([sender(lambda n: Failure("TimeoutError", "TimeoutError: "))], 0.0, 0.3))
    assert result.requests == 0 and 3 <= result.errors <= 6  # 10 ms + 50 ms back-off per try


def test_stop_ends_the_run_early():
    async def go():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        started = asyncio.get_running_loop().time()
        result = await core.closed_loop([sender(lambda n: None)], 0.0, 30.0, stop=stop)
        return result, asyncio.get_running_loop().time() - started

    result, took = asyncio.run(go())
    assert took < 1.0 and result.requests > 5


def test_announce_prints_the_window_edges(capsys):
    asyncio.run(core.closed_loop([sender(lambda n: None)], 0.05, 0.05, announce=True))
    assert capsys.readouterr().out.splitlines() == ['{"event": "window_start"}', '{"event": "window_end"}']

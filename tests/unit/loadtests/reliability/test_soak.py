from __future__ import annotations

from loadtests.drivers.core import Outcome
from loadtests.reliability.soak import Sample, per_window, window_lines


def test_per_window_percentiles_over_the_whole_run_answered_only():
    runs = [Outcome(i * 0.1, 0.010, 200) for i in range(600)]  # 60 s, 10 ms each
    runs += [Outcome(35.0, 0.500, 200)] * 20  # a stall in the second window
    runs += [Outcome(10.0, 9.0, 503), Outcome(70.0, 0.001, 200)]  # an error; a request past the run
    assert per_window(runs, seconds=60.0, window=30.0) == [10.0, 500.0]
    assert per_window(runs, seconds=60.0, window=30.0, q=50) == [10.0, 10.0]
    assert per_window([], seconds=10.0) == [0.0]


def test_window_lines_put_the_box_and_the_workers_beside_the_latencies():
    runs = [Outcome(i * 0.1, 0.010, 200) for i in range(600)]
    samples = [Sample(float(s), 400.0, 0.9, 0.05, ((0.8, 10), (0.6, 4))) for s in range(1, 31)]
    samples += [Sample(float(s), 400.0, 0.5, 0.0, ((0.2, 2), (0.4, 6))) for s in range(31, 61)]
    first, second = window_lines(runs, samples, seconds=60.0, window=30.0)
    assert first.startswith("   0-30 s: p50  10.0  p99   10.0 ms") and "busy 90% (steal 5%)" in first
    assert "cores 0.80/0.60, connections 10/4" in first
    assert "busy 50% (steal 0%)" in second and "cores 0.20/0.40, connections 2/6" in second

"""Triton's own perf_analyzer drives the service in every mode it has for us: exit 0, a throughput and
(v2) the server-side breakdown it reads from the statistics extension.

Under ``CI`` a perf_analyzer that cannot run (``libb64-0d`` or the ``nvidia-cuda-runtime-cu12`` wheel
missing) fails the test; elsewhere it skips, saying what to install.
"""

from __future__ import annotations

import os

import pytest

from loadtests.drivers import perf_analyzer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runnable() -> None:
    why = perf_analyzer.unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run perf_analyzer: {why}")
        pytest.skip(why)


@pytest.mark.parametrize("mode", sorted(perf_analyzer.MODES))
def test_perf_analyzer_runs_in_every_mode(runnable, server, mode):
    http = server.http_url.removeprefix("http://")
    # Exit 0 and figures are the point here, not stable ones: CI's two cores run other tests' servers too,
    # and one noisy window made perf_analyzer give up ("Failed to obtain stable measurement"). A 1000 %
    # margin accepts any three windows that each completed requests.
    result = perf_analyzer.run(
        mode, http, server.grpc_target, "mnist-lstm", concurrency=2, measurement_ms=500, stability_percent=1000, max_trials=10
    )
    assert result["throughput"] > 0, result["report"]
    assert 0 < result["p50_us"] <= result["p99_us"], result
    assert "Concurrency: 2, throughput" in result["report"], result["report"]
    if mode != "tfserving":  # the server-side breakdown, from the statistics extension
        assert "Successful request count" in result["report"] and "compute infer" in result["report"], result["report"]


def test_perf_analyzer_reports_a_server_error_as_a_failure(runnable, server):
    with pytest.raises(perf_analyzer.PerfAnalyzerFailed, match="no-such-model"):
        perf_analyzer.run("grpc", server.http_url.removeprefix("http://"), server.grpc_target, "no-such-model", measurement_ms=500)

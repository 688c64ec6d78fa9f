"""The engine's Prometheus metrics, per served model version: queue time, compute time, batch size, queue depth,
and the counters behind the v2 statistics extension.

Labels: ``model`` (store name) and ``version`` (its number, as v2 and TF Serving name it), so two
served versions of one model never overwrite each other's series.

Created on first use inside a worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` when a worker
starts, and its ``/metrics`` merges every worker's samples (queue depth is summed over workers).
An autoscaler can scale on ``model_queue_seconds``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


# The statistics extension's counters (Triton's fields, see serving/core/statistics.py): every worker
# writes them to the multiprocess store, so any worker answers for the whole server. Not on /metrics:
# batch_stats has a series per batch size, and the histograms above already chart the same times.
STATS_PREFIX = "model_stats_"
PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class EngineMetrics:
    queue_seconds: Any
    compute_seconds: Any
    batch_size: Any
    queue_depth: Any
    requests: Any  # model_stats_requests_total{outcome=success|fail}
    request_seconds: Any  # model_stats_request_seconds_total{outcome}
    batched: Any  # model_stats_batched_requests_total: requests that ran in a batch (queue and compute counts)
    phase_seconds: Any  # model_stats_phase_seconds_total{phase=queue|compute_*}: summed over those requests
    executions: Any  # model_stats_executions_total{batch_size}
    batch_phase_seconds: Any  # model_stats_batch_phase_seconds_total{batch_size, phase}
    last_inference: Any  # model_stats_last_inference_ms (the latest over workers)

    def observe_batch(self, model: str, version: str, queued: list[float], phases: tuple[float, float, float], rows: int) -> None:
        """One model call: each request's queue time, the call's phases, its rows."""
        wait = self.queue_seconds.labels(model=model, version=version)
        for q in queued:
            wait.observe(q)
        self.compute_seconds.labels(model=model, version=version).observe(phases[1])
        self.batch_size.labels(model=model, version=version).observe(rows)
        size = str(rows)
        self.executions.labels(model=model, version=version, batch_size=size).inc()
        for phase, seconds in zip(PHASES, phases):
            self.batch_phase_seconds.labels(model=model, version=version, batch_size=size, phase=phase).inc(seconds)
        if queued:  # batched requests: each is charged its own queue time and its batch's compute (as Triton does)
            self.batched.labels(model=model, version=version).inc(len(queued))
            self.phase_seconds.labels(model=model, version=version, phase="queue").inc(sum(queued))
            for phase, seconds in zip(PHASES, phases):
                self.phase_seconds.labels(model=model, version=version, phase=phase).inc(seconds * len(queued))
        self.last_inference.labels(model=model, version=version).set(time.time() * 1000.0)

    def observe_request(self, model: str, version: str, ok: bool, seconds: float) -> None:
        outcome = "success" if ok else "fail"
        self.requests.labels(model=model, version=version, outcome=outcome).inc()
        self.request_seconds.labels(model=model, version=version, outcome=outcome).inc(seconds)

    def set_depth(self, model: str, version: str, depth: int) -> None:
        self.queue_depth.labels(model=model, version=version).set(depth)


@functools.cache
def engine_metrics() -> EngineMetrics:
    """The process-wide metric families (prometheus_client registers each name once per process)."""
    import prometheus_client as prom

    return EngineMetrics(
        queue_seconds=prom.Histogram(
            "model_queue_seconds",
            "Seconds a request waited for its batch to start, per model version",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
        ),
        compute_seconds=prom.Histogram(
            "model_inference_seconds", "ONNX Runtime seconds per call, per model version", ["model", "version"], buckets=LATENCY_BUCKETS
        ),
        batch_size=prom.Histogram(
            "model_batch_size", "Rows per ONNX Runtime call, per model version", ["model", "version"], buckets=BATCH_BUCKETS
        ),
        queue_depth=prom.Gauge(
            "model_queue_depth",
            "Requests waiting for a batch, per model version (summed over workers)",
            ["model", "version"],
            multiprocess_mode="livesum",
        ),
        requests=prom.Counter(STATS_PREFIX + "requests", "Requests answered or failed", ["model", "version", "outcome"]),
        request_seconds=prom.Counter(STATS_PREFIX + "request_seconds", "Seconds of those requests", ["model", "version", "outcome"]),
        batched=prom.Counter(STATS_PREFIX + "batched_requests", "Requests that ran in a shared batch", ["model", "version"]),
        phase_seconds=prom.Counter(
            STATS_PREFIX + "phase_seconds", "Seconds per phase, summed over batched requests", ["model", "version", "phase"]
        ),
        executions=prom.Counter(STATS_PREFIX + "executions", "Model calls per batch size", ["model", "version", "batch_size"]),
        batch_phase_seconds=prom.Counter(
            STATS_PREFIX + "batch_phase_seconds",
            "Seconds per phase of model calls, per batch size",
            ["model", "version", "batch_size", "phase"],
        ),
        last_inference=prom.Gauge(
            STATS_PREFIX + "last_inference_ms",
            "When the model last ran (ms since the epoch)",
            ["model", "version"],
            multiprocess_mode="max",
        ),
    )

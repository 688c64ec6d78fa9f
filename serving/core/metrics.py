"""The engine's Prometheus metrics, per served model version: queue time, compute time, batch size, queue depth.

Labels: ``model`` (store name) and ``version`` (its number, as v2 and TF Serving name it), so two
served versions of one model never overwrite each other's series.

Created on first use inside a worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` when a worker
starts, and its ``/metrics`` merges every worker's samples (queue depth is summed over workers).
An autoscaler can scale on ``model_queue_seconds``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass(frozen=True)
class EngineMetrics:
    queue_seconds: Any
    compute_seconds: Any
    batch_size: Any
    queue_depth: Any

    def observe_batch(self, model: str, version: str, queued: list[float], computed: float, rows: int) -> None:
        wait = self.queue_seconds.labels(model=model, version=version)
        for q in queued:
            wait.observe(q)
        self.compute_seconds.labels(model=model, version=version).observe(computed)
        self.batch_size.labels(model=model, version=version).observe(rows)

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
    )

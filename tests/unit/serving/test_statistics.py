"""The statistics extension's numbers from the engine's counters (one process: the default registry)."""

from __future__ import annotations

import uuid

from serving.core.metrics import engine_metrics
from serving.core.statistics import model_statistics


def test_requests_batches_and_phases_become_triton_fields():
    metrics, model = engine_metrics(), f"m-{uuid.uuid4().hex[:8]}"  # a fresh model: the registry is process-wide
    metrics.observe_batch(model, "7", [0.001, 0.003], (0.0001, 0.002, 0.0002), 3)  # two requests, 3 rows, one call
    metrics.observe_batch(model, "7", [0.002], (0.0001, 0.001, 0.0001), 1)
    metrics.observe_batch(model, "7", [], (0.0, 0.004, 0.0), 256)  # the direct path: a call, no batched request
    for ok, seconds in ((True, 0.004), (True, 0.005), (True, 0.003), (False, 0.0001)):
        metrics.observe_request(model, "7", ok, seconds)
    metrics.observe_batch(model, "8", [0.5], (0.1, 0.1, 0.1), 1)  # another version stays apart

    (entry,) = model_statistics([(model, "7")])
    assert entry["name"] == model and entry["version"] == "7"
    assert entry["inference_count"] == 260 and entry["execution_count"] == 3
    stats = entry["inference_stats"]
    assert stats["success"] == {"count": 3, "ns": 12_000_000} and stats["fail"] == {"count": 1, "ns": 100_000}
    assert stats["queue"] == {"count": 3, "ns": 6_000_000}
    assert stats["compute_infer"] == {"count": 3, "ns": 5_000_000}  # each request is charged its whole batch
    assert stats["compute_input"] == {"count": 3, "ns": 300_000}
    assert stats["cache_hit"] == stats["cache_miss"] == {"count": 0, "ns": 0}
    sizes = {b["batch_size"]: b for b in entry["batch_stats"]}
    assert sorted(sizes) == [1, 3, 256]
    assert sizes[3]["compute_infer"] == {"count": 1, "ns": 2_000_000} and sizes[256]["compute_infer"] == {"count": 1, "ns": 4_000_000}
    assert entry["last_inference"] > 1.7e12


def test_a_version_never_used_has_zeros():
    (entry,) = model_statistics([("never-used", "1")])
    assert entry["inference_count"] == entry["execution_count"] == entry["last_inference"] == 0
    assert entry["batch_stats"] == [] and entry["inference_stats"]["success"] == {"count": 0, "ns": 0}

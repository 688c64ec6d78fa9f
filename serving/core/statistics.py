"""Triton's statistics extension (``docs/protocol/extension_statistics.md``), for the whole server.

The numbers are the engine's ``model_stats_*`` counters (:mod:`serving.core.metrics`) and its batch
size histogram, read from the Prometheus multiprocess store every worker writes, so whichever worker
answers gives every worker's totals (in a single process, the default registry). Per model version:

- ``inference_count``: rows inferred; ``execution_count``: model calls (a batch is one call);
- ``success`` / ``fail``: requests and their seconds in the data plane, from the checks on;
- ``queue``, ``compute_input``, ``compute_infer``, ``compute_output``: per request that ran in a shared
  batch, its wait and its batch's phases (a request is charged its whole batch, as Triton does);
- ``batch_stats``: per batch size, the calls and their phases;
- ``cache_hit`` / ``cache_miss``: zero (no response cache).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .metrics import PHASES, STATS_PREFIX

Key = tuple[str, str]  # (store name, version number)


def _families() -> Iterable[Any]:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        families: Iterable[Any] = multiprocess.MultiProcessCollector(None).collect()  # type: ignore[no-untyped-call]
        return families
    import prometheus_client as prom

    return prom.REGISTRY.collect()


def _duration(count: float, seconds: float) -> dict[str, int]:
    return {"count": int(count), "ns": int(round(seconds * 1e9))}


def model_statistics(keys: Sequence[Key]) -> list[dict[str, Any]]:
    """Triton's ``model_stats`` entries for ``keys``, in that order (zeros for a version not yet used)."""
    wanted = set(keys)
    totals: dict[Key, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    batches: dict[Key, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    for family in _families():
        if not (family.name.startswith(STATS_PREFIX) or family.name == "model_batch_size"):
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("model", ""), labels.get("version", ""))
            if key not in wanted:
                continue
            name, value = sample.name.removeprefix(STATS_PREFIX), sample.value
            if name in ("requests_total", "request_seconds_total"):
                totals[key][f"{name}:{labels['outcome']}"] += value
            elif name == "phase_seconds_total":
                totals[key][f"phase:{labels['phase']}"] += value
            elif name in ("batched_requests_total", "model_batch_size_sum"):
                totals[key][name] += value
            elif name == "last_inference_ms":
                totals[key][name] = max(totals[key][name], value)
            elif name == "executions_total":
                batches[key][labels["batch_size"]]["count"] += value
            elif name == "batch_phase_seconds_total":
                batches[key][labels["batch_size"]][labels["phase"]] += value
    return [_entry(key, totals[key], batches[key]) for key in keys]


def _entry(key: Key, t: dict[str, float], per_size: dict[str, dict[str, float]]) -> dict[str, Any]:
    batched = t["batched_requests_total"]
    stats = {outcome: _duration(t[f"requests_total:{outcome}"], t[f"request_seconds_total:{outcome}"]) for outcome in ("success", "fail")}
    stats["queue"] = _duration(batched, t["phase:queue"])
    stats.update({phase: _duration(batched, t[f"phase:{phase}"]) for phase in PHASES})
    stats["cache_hit"] = stats["cache_miss"] = _duration(0, 0.0)
    return {
        "name": key[0],
        "version": key[1],
        "last_inference": int(t["last_inference_ms"]),
        "inference_count": int(t["model_batch_size_sum"]),
        "execution_count": int(sum(b["count"] for b in per_size.values())),
        "inference_stats": stats,
        "batch_stats": [
            {"batch_size": int(size), **{phase: _duration(b["count"], b[phase]) for phase in PHASES}}
            for size, b in sorted(per_size.items(), key=lambda item: int(item[0]))
        ],
    }

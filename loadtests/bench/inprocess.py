"""(1) ONNX Runtime in-process: every stored model through the same registry and settings as the server."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any


def inputs_for(rt: Any, rows: int, images01: Any) -> Any:
    """``rows`` inputs of ``rt``'s shape: real test images for image inputs, N(0, 1) points for latents."""
    import numpy as np

    shape = rt.row_shape
    if len(shape) >= 2:
        reps = -(-rows // len(images01))
        x = np.concatenate([images01] * reps)[:rows]
        return np.ascontiguousarray(x.reshape(rows, *shape), dtype=np.float32)
    return np.random.default_rng(0).standard_normal((rows, *shape), dtype=np.float32)


def time_runtime(rt: Any, x: Any, min_seconds: float, min_calls: int = 3) -> dict[str, float]:
    """Images/s and ms per call of ``rt.predict_all`` on ``x`` (after two warm-up calls)."""
    for _ in range(2):
        rt.predict_all(x)
    calls, started = 0, time.perf_counter()
    while True:
        rt.predict_all(x)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and calls >= min_calls:
            break
    return {"images_per_s": calls * len(x) / elapsed, "ms_per_call": elapsed * 1000.0 / calls, "calls": calls}


def measure_inprocess(batches: Sequence[int], min_seconds: float, images01: Any, cpus: set[int] | None) -> tuple[list[dict[str, Any]], Any]:
    """(1): every stored model through serving.runtime's Registry, the same code and settings as the server."""
    from serving.core.lifecycle import registry_from_store
    from serving.settings import Settings

    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        registry = registry_from_store(Settings.from_env())
        registry.load_all()
        rows = []
        for name in sorted(registry.runtimes):
            rt = registry.runtimes[name]
            cells = {str(b): time_runtime(rt, inputs_for(rt, b, images01), min_seconds) for b in batches}
            rows.append({"model": name, "task": rt.task, "provider": rt.provider, "batches": cells})
            print(f"bench: (1) {name}: " + ", ".join(f"b{b} {c['images_per_s']:,.0f}/s" for b, c in cells.items()), flush=True)
        return rows, registry
    finally:
        os.sched_setaffinity(0, before)


def adjacent_inprocess(registry: Any, store_name: str, cpus: set[int] | None, seconds: float) -> float | None:
    """In-process images/s of one model at batch 1,024, measured now on ``cpus``."""
    import numpy as np

    rt = registry.runtimes.get(store_name)
    if rt is None or not rt.ready:
        return None
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        rows = np.random.default_rng(0).random((1024, *rt.row_shape), dtype=np.float32)
        return time_runtime(rt, rows, seconds)["images_per_s"]
    finally:
        os.sched_setaffinity(0, before)

"""Bulk classification through system shared memory against binary tensor data, over v2 REST and gRPC.

    python -m loadtests.shm_bulk --http 127.0.0.1:3000 --grpc 127.0.0.1:8500 --rows 1024 --repeat 30

Needs a server whose row limit takes ``--rows`` images per request (SERVING_MAX_IMAGES_PER_REQUEST).
Prints, per transport, the median seconds per request and images/s with and without shared memory
(input and output in registered regions), and the speed-up.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def _median_s(call: Callable[[], object], repeat: int) -> float:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import tritonclient.utils.shared_memory as shm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", default="127.0.0.1:3000")
    parser.add_argument("--grpc", default="127.0.0.1:8500")
    parser.add_argument("--model", default="mnist-lstm")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)

    images = np.random.default_rng(0).random((args.rows, 28, 28), dtype=np.float32)
    in_bytes, out_bytes = images.nbytes, args.rows * 10 * 4
    tag = uuid.uuid4().hex[:8]
    handles = [
        shm.create_shared_memory_region(f"in-{tag}", f"/bulk-in-{tag}", in_bytes),
        shm.create_shared_memory_region(f"out-{tag}", f"/bulk-out-{tag}", out_bytes),
    ]
    shm.set_shared_memory_region(handles[0], [images])
    clients: dict[str, tuple[Any, Any]] = {
        "REST": (httpclient, httpclient.InferenceServerClient(args.http, network_timeout=120)),
        "gRPC": (grpcclient, grpcclient.InferenceServerClient(args.grpc)),
    }
    try:
        print(f"{args.rows} images per request, {args.model}, median of {args.repeat}")
        print("| transport | binary tensor data | shared memory | speed-up |")
        print("|---|--:|--:|--:|")
        for label, (module, client) in clients.items():
            client.unregister_system_shared_memory()
            client.register_system_shared_memory(f"in-{tag}", f"/bulk-in-{tag}", in_bytes)
            client.register_system_shared_memory(f"out-{tag}", f"/bulk-out-{tag}", out_bytes)
            plain = module.InferInput("images", list(images.shape), "FP32")
            plain.set_data_from_numpy(images)
            binary_out = [module.InferRequestedOutput("probabilities", binary_data=True)] if module is httpclient else None
            shared = module.InferInput("images", list(images.shape), "FP32")
            shared.set_shared_memory(f"in-{tag}", in_bytes)
            shared_out = module.InferRequestedOutput("probabilities")
            shared_out.set_shared_memory(f"out-{tag}", out_bytes)
            expected = client.infer(args.model, [plain], outputs=binary_out).as_numpy("probabilities")
            client.infer(args.model, [shared], outputs=[shared_out])
            got = shm.get_contents_as_numpy(handles[1], np.float32, [args.rows, 10])
            np.testing.assert_allclose(got, expected, atol=1e-6)
            t_plain = _median_s(functools.partial(client.infer, args.model, [plain], outputs=binary_out), args.repeat)
            t_shared = _median_s(functools.partial(client.infer, args.model, [shared], outputs=[shared_out]), args.repeat)
            print(
                f"| {label} | {t_plain * 1000:.1f} ms ({args.rows / t_plain:,.0f} img/s) "
                f"| {t_shared * 1000:.1f} ms ({args.rows / t_shared:,.0f} img/s) | {t_plain / t_shared:.2f}x |"
            )
            client.unregister_system_shared_memory()
    finally:
        for _, client in clients.values():
            client.close()
        for handle in handles:
            shm.destroy_shared_memory_region(handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

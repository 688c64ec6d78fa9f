"""Back-pressure: a full model queue is refused at once (HTTP 503 + Retry-After, gRPC UNAVAILABLE), never hangs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from contract import tensors
from contract.protos.tensorflow_serving.apis import predict_pb2
from loadtests.server import running

pytestmark = pytest.mark.slow

ROWS = 256  # the largest generate request: a few tens of ms of decoding on 2 cores
CALLERS = 24


def test_full_queue_is_refused_at_once_on_both_protocols(trained_store, tmp_path: Path) -> None:
    env = {"SERVING_MAX_QUEUE": "1", "SERVING_WORKERS": "1"}
    with running(tmp_path / "server.log", str(trained_store.home), extra_env=env) as service:
        z = np.random.default_rng(0).standard_normal((ROWS, 4)).round(3).tolist()

        async def http_flood() -> list[tuple[int, dict, str | None, float]]:
            async with httpx.AsyncClient(base_url=service.http_url, timeout=60) as client:

                async def one() -> tuple[int, dict, str | None, float]:
                    started = time.perf_counter()
                    r = await client.post("/v1/generate", json={"model": "vae4", "z": z, "format": "array"})
                    body = r.json() if r.status_code != 200 else {}
                    return r.status_code, body, r.headers.get("retry-after"), time.perf_counter() - started

                return await asyncio.gather(*(one() for _ in range(CALLERS)))

        answers = asyncio.run(http_flood())
        statuses = sorted({a[0] for a in answers})
        assert statuses == [200, 503], statuses
        refused = [a for a in answers if a[0] == 503]
        assert all(body["type"] == "Overloaded" and "SERVING_MAX_QUEUE" in body["error"] for _, body, _, _ in refused)
        assert all(retry == "1" for _, _, retry, _ in refused)
        # A refusal does not wait for the queue: the fastest 503 beats the slowest answer by far.
        assert min(a[3] for a in refused) < max(a[3] for a in answers if a[0] == 200) / 2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "fashion-vae4-decoder"
        request.inputs["z"].CopyFrom(tensors.array_to_tensor_proto(np.asarray(z, np.float32)))
        raw = request.SerializeToString()

        async def grpc_flood() -> list[grpc.StatusCode]:
            async with grpc.aio.insecure_channel(service.grpc_target) as channel:
                call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

                async def one() -> grpc.StatusCode:
                    try:
                        await call(raw, timeout=60)
                        return grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as e:
                        assert e.code() != grpc.StatusCode.UNAVAILABLE or "SERVING_MAX_QUEUE" in e.details()
                        return e.code()

                return await asyncio.gather(*(one() for _ in range(CALLERS)))

        codes = set(asyncio.run(grpc_flood()))
        assert codes == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes

        # Still healthy, and single requests are served as before.
        assert httpx.get(f"{service.http_url}/readyz").status_code == 200
        ok = httpx.post(f"{service.http_url}/v1/classify", json={"images": np.zeros((28, 28), int).tolist()}, timeout=30)
        assert ok.status_code == 200, ok.text

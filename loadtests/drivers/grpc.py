"""gRPC load from ``grpc.aio``: TF-Serving ``Predict`` in a closed loop, and the serialized requests of both gRPC APIs.

N calls are kept in flight, each sending the next as soon as its answer arrives, over ``channels``
separate HTTP/2 connections (default: one per call, as wrk and the HTTP driver use one connection per
client, so a server with SO_REUSEPORT workers sees the connections spread). The request is serialized
once before the clock starts and sent as bytes through a generic ``channel.unary_unary(...,
request_serializer=None, response_deserializer=None)``, and answers are not parsed (the first one is,
once, to check it), so the client spends little of the shared CPU.

Request: one MNIST test image as ``images`` float32 [1, 28, 28] (value / 255) in ``tensor_content``
(:func:`predict_request_bytes`; the v2 ``ModelInfer`` one, which h2load sends, is :func:`infer_request_bytes`).
Stubs: ``contract.protos.tensorflow_serving.apis`` (generated, no TensorFlow), else the stock
``tensorflow_serving.apis``.

    python -m loadtests.drivers.grpc --target 127.0.0.1:8500 --model mnist-lstm -c 32 --duration 10 [--cpus 0]

prints ``{"event": "window_start"}`` / ``{"event": "window_end"}`` lines as the measured window opens
and closes, then the result as one JSON line (``rps``, ``p50_ms``, ``p99_ms``, ``errors``, ...).
From Python: :func:`run_grpc` runs that in a subprocess and returns the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import core, process
from .core import Failure

METHOD = "/tensorflow.serving.PredictionService/Predict"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
SIGNATURE = "serving_default"
DT_FLOAT = 1  # tensorflow.DataType.DT_FLOAT


def load_stubs() -> tuple[Any, str]:
    """``(predict_pb2, where from)``: the repo's generated protos, else the stock tensorflow_serving ones."""
    try:
        from contract.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: F401

        return predict_pb2, "contract.protos.tensorflow_serving.apis"
    except ImportError:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: F401

        return predict_pb2, "tensorflow_serving.apis"


def image_tensor(image: Any) -> np.ndarray:
    """One 28x28 image as float32 [1, 28, 28] in 0..1 (uint8 is divided by 255; floats are taken as they are)."""
    arr = np.asarray(image)
    if arr.shape not in ((28, 28), (1, 28, 28)):
        raise ValueError(f"expected one 28x28 image, got shape {arr.shape}")
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.ascontiguousarray(x.reshape(1, 28, 28))


def predict_request_bytes(
    image: Any, model_name: str, input_name: str = "images", signature_name: str = SIGNATURE, predict_pb2: Any = None
) -> bytes:
    """A serialized ``PredictRequest``: ``input_name`` = DT_FLOAT [1, 28, 28] as little-endian tensor_content."""
    pb = predict_pb2 or load_stubs()[0]
    x = image_tensor(image)
    request = pb.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    tensor = request.inputs[input_name]
    tensor.dtype = DT_FLOAT
    for d in x.shape:
        tensor.tensor_shape.dim.add().size = d
    tensor.tensor_content = x.astype("<f4").tobytes()
    return request.SerializeToString()


def check_response(raw: bytes, predict_pb2: Any = None) -> dict[str, list[int]]:
    """Output name -> shape of a serialized ``PredictResponse`` (raises if it does not parse or has none)."""
    pb = predict_pb2 or load_stubs()[0]
    response = pb.PredictResponse.FromString(raw)
    shapes = {name: [d.size for d in t.tensor_shape.dim] for name, t in response.outputs.items()}
    if not shapes:
        raise ValueError("PredictResponse has no outputs")
    return shapes


def infer_request_bytes(image: Any, model_name: str, input_name: str = "images") -> bytes:
    """A serialized v2 ``ModelInferRequest``: ``input_name`` = FP32 [1, 28, 28] in ``raw_input_contents``."""
    from contract.protos.inference import grpc_service_pb2 as pb

    x = image_tensor(image)
    request = pb.ModelInferRequest(model_name=model_name, raw_input_contents=[x.astype("<f4").tobytes()])
    request.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
    return request.SerializeToString()


def check_infer_response(raw: bytes) -> dict[str, list[int]]:
    """Output name -> shape of a serialized v2 ``ModelInferResponse`` (raises if it does not parse or has none)."""
    from contract.protos.inference import grpc_service_pb2 as pb

    response = pb.ModelInferResponse.FromString(raw)
    shapes = {t.name: list(t.shape) for t in response.outputs}
    if not shapes or len(response.raw_output_contents) != len(shapes):
        raise ValueError("ModelInferResponse has no outputs")
    return shapes


async def closed_loop(
    target: str,
    request: bytes,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    channels: int | None = None,
    timeout_s: float = 30.0,
    announce: bool = False,
) -> dict[str, Any]:
    """``concurrency`` calls in flight over ``channels`` connections; answers completing in the window count."""
    import grpc

    n_channels = max(1, min(channels or concurrency, concurrency))
    # A local subchannel pool per channel: otherwise channels to one target share one TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    chans = [grpc.aio.insecure_channel(target, options=options) for _ in range(n_channels)]
    try:
        calls = [c.unary_unary(METHOD, request_serializer=None, response_deserializer=None) for c in chans]
        first = await calls[0](request, timeout=timeout_s)
        outputs = check_response(first)
        for call in calls[1:]:  # connect every channel before the clock starts
            await call(request, timeout=timeout_s)

        def sender(call: Any) -> core.Sender:
            async def send() -> Failure | None:
                try:
                    await call(request, timeout=timeout_s)
                except grpc.aio.AioRpcError as e:
                    code = e.code().name
                    return Failure(code, f"{code}: {e.details()}")  # an unavailable server: back off, do not spin
                return None

            return send

        senders = [sender(calls[k % n_channels]) for k in range(concurrency)]
        result = await core.closed_loop(senders, warmup_s, duration_s, announce=announce)
    finally:
        for c in chans:
            await c.close()
    return asdict(result) | {"channels": n_channels, "request_bytes": len(request), "outputs": outputs}


def load_image(image_npy: str | None, data_dir: str | None, index: int) -> np.ndarray:
    """The image from a ``.npy`` file, else MNIST test image ``index``."""
    if image_npy:
        return np.load(image_npy, allow_pickle=False)
    from ..workload import mnist_test_images

    return mnist_test_images(data_dir, index + 1)[index]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.drivers.grpc", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="host:port of the TF-Serving gRPC API")
    p.add_argument("--model", default="mnist-lstm", help="model_spec.name (the store name)")
    p.add_argument("--input", default="images", help="input tensor name")
    p.add_argument("--signature", default=SIGNATURE)
    p.add_argument("-c", "--concurrency", type=int, default=1, help="calls in flight")
    p.add_argument("--channels", type=int, default=0, help="connections (default: one per call)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not counted")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    p.add_argument("--cpus", help="pin this process to these CPUs, e.g. 0 or 0,1")
    p.add_argument("--image-npy", help="the image as a .npy file (28x28 uint8 or float 0..1)")
    p.add_argument("--data-dir", help="MNIST IDX folder (when no --image-npy)")
    p.add_argument("--image-index", type=int, default=0, help="which MNIST test image")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.concurrency <= 1024 or not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        print("grpc driver: concurrency 1..1024, duration (0, 600] s, warmup [0, 60] s", file=sys.stderr)
        return 2
    cpus = process.parse_cpus(args.cpus)
    if cpus:
        os.sched_setaffinity(0, cpus)
    predict_pb2, source = load_stubs()
    request = predict_request_bytes(
        load_image(args.image_npy, args.data_dir, args.image_index), args.model, args.input, args.signature, predict_pb2
    )
    result = asyncio.run(
        closed_loop(args.target, request, args.concurrency, args.warmup, args.duration, args.channels or None, args.timeout, announce=True)
    )
    result.update(target=args.target, model=args.model, stubs=source, cpus=sorted(os.sched_getaffinity(0)))
    print(json.dumps(result))
    return 0


def run_grpc(
    target: str,
    model_name: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    *,
    image: Any = None,
    data_dir: str | None = None,
    cpus: set[int] | None = None,
    channels: int | None = None,
    timeout_s: float = 30.0,
    input_name: str = "images",
    on_window: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run :func:`main` in its own process (pinned to ``cpus``) and return its result dict; ``on_window`` gets
    ``"window_start"`` and ``"window_end"`` as the measured window opens and closes."""
    args = ["--target", target, "--model", model_name, "--input", input_name, "-c", str(concurrency)]
    args += ["--warmup", str(warmup_s), "--duration", str(duration_s), "--timeout", str(timeout_s)]
    if channels:
        args += ["--channels", str(channels)]
    if cpus:
        args += ["--cpus", ",".join(str(c) for c in sorted(cpus))]
    with tempfile.TemporaryDirectory(prefix="grpc-driver-") as tmp:
        if image is not None:
            path = Path(tmp) / "image.npy"
            np.save(path, np.asarray(image), allow_pickle=False)
            args += ["--image-npy", str(path)]
        elif data_dir:
            args += ["--data-dir", data_dir]
        return process.run_driver(
            "loadtests.drivers.grpc", args, label=f"grpc driver c={concurrency}", on_window=on_window, timeout_s=timeout_s + 60
        )


if __name__ == "__main__":
    raise SystemExit(main())

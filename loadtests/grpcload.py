"""A lean closed-loop gRPC load generator for TF-Serving ``PredictionService/Predict`` (its own process).

N calls are kept in flight (``grpc.aio``), each sending the next as soon as its answer arrives, over
``channels`` separate HTTP/2 connections (default: one per call, as wrk and the HTTP loadgen use one
connection per client, so a server with SO_REUSEPORT workers sees the connections spread). The
``PredictRequest`` is serialized once before the clock starts and sent as bytes through a generic
``channel.unary_unary(..., request_serializer=None, response_deserializer=None)``, and answers are not
parsed (the first one is, once, to check it), so the client spends little of the shared CPU.

Request: one MNIST test image as ``images`` float32 [1, 28, 28] (value / 255) in ``tensor_content``.
Stubs: ``contract.protos.tensorflow_serving.apis`` (generated, no TensorFlow), else the stock
``tensorflow_serving.apis``.

    python -m loadtests.grpcload --target 127.0.0.1:8500 --model mnist-lstm -c 32 --duration 10 [--cpus 0]

prints ``{"event": "window_start"}`` / ``{"event": "window_end"}`` lines as the measured window opens
and closes, then the result as one JSON line (``rps``, ``p50_ms``, ``p99_ms``, ``errors``, ...).
From Python: :func:`run_grpc` runs that in a subprocess and returns the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .loadgen import percentile
from .server import REPO

METHOD = "/tensorflow.serving.PredictionService/Predict"
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


INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


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

        latencies: list[float] = []
        errors = 0
        codes: dict[str, int] = {}
        first_error: list[str] = []
        window_start = time.perf_counter() + warmup_s
        window_end = window_start + duration_s
        cpu: dict[str, float] = {}

        async def client(k: int) -> None:
            nonlocal errors
            call = calls[k % n_channels]
            while True:
                started = time.perf_counter()
                if started >= window_end:
                    return
                ok = True
                try:
                    await call(request, timeout=timeout_s)
                except grpc.aio.AioRpcError as e:
                    ok = False
                    code = e.code().name
                    if window_start <= time.perf_counter() <= window_end:
                        codes[code] = codes.get(code, 0) + 1
                    if not first_error:
                        first_error.append(f"{code}: {e.details()}")
                done = time.perf_counter()
                if window_start <= done <= window_end:
                    if ok:
                        latencies.append(done - started)
                    else:
                        errors += 1
                if not ok:
                    await asyncio.sleep(0.05)  # an unavailable server: do not spin

        async def mark() -> None:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            cpu["start"] = time.process_time()
            if announce:
                print(json.dumps({"event": "window_start"}), flush=True)
            await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
            cpu["end"] = time.process_time()
            if announce:
                print(json.dumps({"event": "window_end"}), flush=True)

        await asyncio.gather(mark(), *(client(k) for k in range(concurrency)))
    finally:
        for c in chans:
            await c.close()
    ms = sorted(v * 1000.0 for v in latencies)
    used = cpu.get("end", time.process_time()) - cpu.get("start", 0.0)
    return {
        "concurrency": concurrency,
        "channels": n_channels,
        "seconds": duration_s,
        "requests": len(ms),
        "errors": errors,
        "error_codes": codes,
        "rps": len(ms) / duration_s,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else None,
        "client_cpu_s": used,
        "client_cpu_cores": used / duration_s,
        "request_bytes": len(request),
        "outputs": outputs,
        "first_error": first_error[0] if first_error else None,
    }


def load_image(image_npy: str | None, data_dir: str | None, index: int) -> np.ndarray:
    """The image from a ``.npy`` file, else MNIST test image ``index``."""
    if image_npy:
        return np.load(image_npy, allow_pickle=False)
    from .workload import mnist_test_images

    return mnist_test_images(data_dir, index + 1)[index]


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0"``, ``"0,1"`` or ``"0-3"`` (and mixes) -> a CPU set; empty or None -> None."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return cpus or None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.grpcload", description=__doc__.splitlines()[0])
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
        print("grpcload: concurrency 1..1024, duration (0, 600] s, warmup [0, 60] s", file=sys.stderr)
        return 2
    cpus = parse_cpus(args.cpus)
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
    with tempfile.TemporaryDirectory(prefix="grpcload-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "loadtests.grpcload",
            "--target",
            target,
            "--model",
            model_name,
            "--input",
            input_name,
            "-c",
            str(concurrency),
            "--warmup",
            str(warmup_s),
            "--duration",
            str(duration_s),
            "--timeout",
            str(timeout_s),
        ]
        if channels:
            cmd += ["--channels", str(channels)]
        if cpus:
            cmd += ["--cpus", ",".join(str(c) for c in sorted(cpus))]
        if image is not None:
            path = Path(tmp) / "image.npy"
            np.save(path, np.asarray(image), allow_pickle=False)
            cmd += ["--image-npy", str(path)]
        elif data_dir:
            cmd += ["--data-dir", data_dir]
        err_path = Path(tmp) / "stderr.txt"
        result: dict[str, Any] = {}
        with err_path.open("w") as err_file:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") in ("window_start", "window_end"):
                    if on_window:
                        on_window(event["event"])
                elif "rps" in event:
                    result = event
            proc.wait(timeout=timeout_s + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = err_path.read_text(errors="replace")
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"grpcload c={concurrency} failed with status {proc.returncode}: {(err or '')[-2000:]}")
    return result


if __name__ == "__main__":
    raise SystemExit(main())

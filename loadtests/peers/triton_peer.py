"""Triton Inference Server (through PyTriton) serving the classifier's ONNX file: a peer for the benchmark.

Runs in its own virtualenv (``make peers-venv`` -> ``.venv-peers/``; nvidia-pytriton's pins clash with
the main venv's), so it imports nothing from ``serving/`` and nothing outside the standard library,
numpy, onnxruntime, pytriton and the standard-library-only ``contract.artifacts`` (which reads
``signature.json``) and ``contract.triton`` (the model configuration). It reads ``model.onnx`` and
``signature.json`` from a model directory of the store (``$BENTOML_HOME/models/mnist-lstm/<version>/``).

    .venv-peers/bin/python -m loadtests.peers.triton_peer --model-dir DIR --http-port P --grpc-port Q

One ONNX Runtime session runs inside the PyTriton infer function; Triton's dynamic batcher merges
concurrent requests with the configuration ``contract.triton`` writes for every Triton of ours (max
batch 64 and no queue delay, as our engine batches: a lone request runs at once, requests queued
while the model computes join its next batch; no preferred batch sizes given: Triton's config
normalization then lists ``preferred_batch_size: [64]``, i.e. "up to the max batch"). HTTP and
gRPC (KServe v2) listen on 127.0.0.1. PyTriton starts tritonserver before it loads the model, so ready
means ``GET /v2/health/ready`` *and* ``GET /v2/models/<name>/ready`` are 200. SIGINT or SIGTERM stops
Triton and its children (tritonserver also gets SIGTERM from the kernel if this process dies).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract import triton
from contract.artifacts import read_signature

from .signature import DEFAULT_QUEUE_DELAY_US


def libpython_dir() -> str | None:
    """The folder of this interpreter's shared libpython, when it has one there."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).exists():
        return str(libdir)
    return None


def with_libpython_first(ld_library_path: str | None, libdir: str | None) -> str | None:
    """``LD_LIBRARY_PATH`` with ``libdir`` in front (once)."""
    parts = [p for p in (ld_library_path or "").split(":") if p]
    if not libdir:
        return ld_library_path
    return ":".join([libdir, *[p for p in parts if p != libdir]])


def make_session(model_path: Path, threads: int = 0, spinning: bool = False) -> Any:
    """An ONNX Runtime session on the CPU (CUDA first when this onnxruntime build has it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        # The same choice as our service: spinning ORT threads steal the cores the server's own threads need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.peers.triton_peer", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, type=Path, help="folder with model.onnx and signature.json")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, default=0, help="Triton's Prometheus port (0 = metrics off)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--max-batch", type=int, default=triton.MAX_BATCH_SIZE)
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=DEFAULT_QUEUE_DELAY_US,
        help=f"dynamic batcher's max queue delay in microseconds (default {DEFAULT_QUEUE_DELAY_US}, the benchmark's)",
    )
    p.add_argument("--instances", type=int, default=1, help="infer-function instances (each its own ORT session)")
    p.add_argument("--ort-threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default)")
    p.add_argument("--ort-spinning", action="store_true", help="let ORT threads spin-wait between runs")
    p.add_argument("--log-verbose", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("triton_peer")

    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    # Triton's Python-backend stub links libpython3.X.so by soname; without this the dynamic loader may
    # find the system's (say Debian's 3.11.2) while the stub runs this venv's standard library (say
    # pyenv's 3.11.7), and the model fails to load (AttributeError inside multiprocessing). The stub is a
    # child of tritonserver, which PyTriton starts with a copy of os.environ.
    path = with_libpython_first(os.environ.get("LD_LIBRARY_PATH"), libpython_dir())
    if path:
        os.environ["LD_LIBRARY_PATH"] = path

    signature = read_signature(args.model_dir)
    model = triton.model_config(
        signature["name"], signature, max_batch_size=args.max_batch, max_queue_delay_us=args.max_queue_delay_us, warmup=(), labels=False
    )
    (model_input, *_), model_output = model["input"], model["output"][0]  # the peer serves one input, the first output
    in_name, out_name = model_input["name"], model_output["name"]

    def make_infer(session: Any) -> Any:
        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            x = inputs[in_name]
            if x.dtype != np.float32:
                x = x.astype(np.float32)
            return {out_name: session.run([out_name], {in_name: x})[0]}

        return infer

    sessions = [make_session(args.model_dir / "model.onnx", args.ort_threads, args.ort_spinning) for _ in range(max(1, args.instances))]
    for s in sessions:  # warm up: the first run plans and allocates
        for n in triton.WARMUP_BATCH_SIZES:
            s.run([out_name], {in_name: np.zeros((n, *model_input["dims"]), dtype=np.float32)})
    log.info("ORT %s on %s, %d instance(s)", __import__("onnxruntime").__version__, sessions[0].get_providers()[0], len(sessions))

    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        allow_metrics=bool(args.metrics_port),
        metrics_port=args.metrics_port or None,
        allow_sagemaker=False,
        allow_vertex_ai=False,
        log_verbose=args.log_verbose,
        exit_on_error=True,
        strict_readiness=True,
    )

    def on_term(signum: int, frame: Any) -> None:  # pytriton's serve() stops cleanly on KeyboardInterrupt
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # PyTriton restricts statistics, shared memory, the repository, trace and logging to a random token by
    # default; perf_analyzer reads statistics and registers shared memory, and ours restricts nothing by
    # default: the same here (loopback only).
    with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as server:
        server.bind(
            model_name=model["name"],
            infer_func=[make_infer(s) for s in sessions],
            inputs=[Tensor(name=in_name, dtype=np.float32, shape=tuple(model_input["dims"]))],
            outputs=[Tensor(name=out_name, dtype=np.float32, shape=tuple(model_output["dims"]))],
            config=ModelConfig(
                max_batch_size=model["max_batch_size"],
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=model["dynamic_batching"]["max_queue_delay_microseconds"], preferred_batch_size=None
                ),
            ),
            strict=True,
        )
        log.info(
            "serving %s: HTTP %s:%d, gRPC %s:%d, dynamic batching max %d, delay %d us",
            model["name"],
            args.host,
            args.http_port,
            args.host,
            args.grpc_port,
            model["max_batch_size"],
            model["dynamic_batching"]["max_queue_delay_microseconds"],
        )
        try:
            server.serve()
        except KeyboardInterrupt:
            log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())

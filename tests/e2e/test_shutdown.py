"""SIGTERM under load: both fronts stop accepting, finish what they accepted, and the launcher exits 0 in time.

The test starts its own server (the session ``server`` must outlive it), drives
a small bounded load over HTTP (JSON classify and a bulk ``.npy`` request that
takes a while) and gRPC (TF-Serving Predict), sends SIGTERM to the launcher the
way Kubernetes does (to PID 1 only), and sorts every request into:

- ``ok``: a complete answer equal to the reference answer for the same input;
- ``refused``: never accepted (connection refused, or gRPC's own UNAVAILABLE
  before the call reached a servicer);
- ``dropped``: closed before any answer started (a connection reset from the
  listen backlog; a gRPC call cancelled before a servicer got it);
- ``bad``: anything else: a 5xx or other error status, a truncated or wrong
  answer, or a gRPC call that our front accepted but could not complete.

Requests started well before the signal (``ACCEPTED_AFTER_S``) were in flight
and must all be ``ok``; later ones may be ``refused`` or ``dropped``, never ``bad``.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtests.server import REPO, launch, stop, wait_ready

pytestmark = pytest.mark.slow

DRAIN_S = 8.0  # SERVING_DRAIN_TIMEOUT_S of this server
EXIT_BOUND_S = DRAIN_S + 5.0  # SIGTERM -> launcher exit, with room for process start-up/teardown
MODEL, STORE_NAME = "lstm", "mnist-lstm"
ROWS = 16  # images per JSON / gRPC request
BULK_ROWS = 4096  # images per .npy request: long enough to be in flight when the signal comes
MAX_REQUESTS = 500  # per thread: the load is bounded in count ...
MAX_SECONDS = 60.0  # ... and in time
ATOL = 1e-4  # batch composition changes float summation order slightly
# A request started this long before the signal has surely been read by the server (the bulk body is
# 3 MiB over loopback), so it was accepted and must be answered. One started later may still sit in
# the listen backlog when the server stops accepting: it may be refused or reset, never answered wrongly.
ACCEPTED_AFTER_S = 0.25


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    result: str  # ok | refused | dropped | bad
    detail: str = ""


class Load:
    """Worker threads that send requests until told to stop, the server refuses them, or a bound is hit."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self.bulk_in_flight = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, kind: str, send: Callable[[], tuple[str, str]], on_start: Callable[[], None] | None = None) -> None:
        def loop() -> None:
            deadline = time.monotonic() + MAX_SECONDS
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                started = time.monotonic()
                if on_start:
                    on_start()
                try:
                    result, detail = send()
                except Exception as e:  # an unexpected client-side failure is a finding, not a crash of the test
                    result, detail = "bad", f"{type(e).__name__}: {e}"
                with self._lock:
                    self.outcomes.append(Outcome(kind, started, result, detail))
                if result == "refused":
                    return  # the server is gone for this client
                time.sleep(0.005)

        thread = threading.Thread(target=loop, name=f"load-{kind}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def count(self, kind: str, result: str = "ok") -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.kind == kind and o.result == result)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.stop.set()


def http_classify(url: str, images: np.ndarray, reference: np.ndarray) -> tuple[str, str]:
    # A fresh connection per request: a keep-alive race would blur "refused" and "dropped".
    try:
        response = httpx.post(
            f"{url}/v1/classify",
            json={"model": MODEL, "images": images.tolist()},
            headers={"Connection": "close"},
            timeout=30,
        )
    except httpx.ConnectError as e:
        return "refused", str(e)
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        return "dropped", f"{type(e).__name__}: {e}"
    if response.status_code != 200:
        return "bad", f"HTTP {response.status_code}: {response.text[:200]}"
    try:
        probs = np.array([p["probabilities"] for p in response.json()["predictions"]], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as e:
        return "bad", f"unreadable answer ({e}): {response.text[:200]}"
    if probs.shape != reference.shape or not np.allclose(probs, reference, atol=ATOL):
        return (
            "bad",
            f"wrong answer: shape {probs.shape}, max diff {np.max(np.abs(probs - reference)) if probs.shape == reference.shape else 'n/a'}",
        )
    return "ok", ""


def http_bulk(url: str, body: bytes, reference: np.ndarray) -> tuple[str, str]:
    try:
        response = httpx.post(
            f"{url}/v1/classify/batch",
            params={"model": MODEL},
            content=body,
            headers={"Connection": "close", "Content-Type": "application/octet-stream"},
            timeout=60,
        )
    except httpx.ConnectError as e:
        return "refused", str(e)
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        return "dropped", f"{type(e).__name__}: {e}"
    if response.status_code != 200:
        return "bad", f"HTTP {response.status_code}: {response.text[:200]}"
    try:
        probs = np.load(io.BytesIO(response.content), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        return "bad", f"truncated .npy ({len(response.content)} bytes): {e}"
    if probs.shape != reference.shape or not np.allclose(probs, reference, atol=ATOL):
        return "bad", f"wrong bulk answer: shape {probs.shape}"
    return "ok", ""


# Messages with which gRPC itself (not our servicer) turns a call away: nothing was accepted.
GRPC_TRANSPORT_REFUSALS = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "socket closed",
    "server shutdown",
    "goaway",
)


def grpc_predict(stub, request, reference: np.ndarray) -> tuple[str, str]:
    import grpc

    from contract import tensors

    try:
        response = stub.Predict(request, timeout=30)
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and any(s in details.lower() for s in GRPC_TRANSPORT_REFUSALS):
            return "refused", details
        if code == grpc.StatusCode.CANCELLED:
            # gRPC cancels a call still queued, never handed to a servicer, when the server stops:
            # the HTTP/2 twin of a reset connection.
            return "dropped", details
        return "bad", f"{code.name}: {details}"
    probs = tensors.tensor_proto_to_array(response.outputs["probabilities"])
    if probs.shape != reference.shape or not np.allclose(probs, reference, atol=ATOL):
        return "bad", f"wrong gRPC answer: shape {probs.shape}"
    return "ok", ""


def test_sigterm_under_load_drains_and_exits_0(trained_store, tmp_path: Path) -> None:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from contract import tensors
    from serving.protocols import codec
    from training.data import load

    split = load("mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets"))
    images = split.x_test[:ROWS]
    bulk = np.resize(split.x_test[:256], (BULK_ROWS, 28, 28)).astype(np.uint8)
    bulk_body = codec.array_to_npy(bulk)

    log_path = tmp_path / "server.log"
    service = launch(log_path, str(trained_store.home), extra_env={"SERVING_DRAIN_TIMEOUT_S": str(DRAIN_S)})
    process, http_url, grpc_target = service.process, service.http_url, service.grpc_target
    channels: list = []
    try:
        wait_ready(service)

        # Reference answers, taken while nothing else runs.
        first = httpx.post(f"{http_url}/v1/classify", json={"model": MODEL, "images": images.tolist()}, timeout=60)
        first.raise_for_status()
        reference = np.array([p["probabilities"] for p in first.json()["predictions"]], dtype=np.float32)
        bulk_answer = httpx.post(f"{http_url}/v1/classify/batch", params={"model": MODEL}, content=bulk_body, timeout=60)
        bulk_answer.raise_for_status()
        bulk_reference = np.load(io.BytesIO(bulk_answer.content))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = STORE_NAME
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(tensors.array_to_tensor_proto(images.astype(np.float32) / 255.0))

        run = Load()
        for i in range(2):
            run.add(f"http-{i}", lambda: http_classify(http_url, images, reference))
        for i in range(2):
            channel = grpc.insecure_channel(grpc_target)
            channels.append(channel)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            run.add(f"grpc-{i}", lambda stub=stub: grpc_predict(stub, request, reference))
        run.add("bulk", lambda: http_bulk(http_url, bulk_body, bulk_reference), on_start=run.bulk_in_flight.set)

        # Warm: every thread has had answers; then signal while a bulk request is being served.
        deadline = time.monotonic() + 30
        kinds = ["http-0", "http-1", "grpc-0", "grpc-1", "bulk"]
        while time.monotonic() < deadline and not all(run.count(k) >= 2 for k in kinds):
            time.sleep(0.05)
        assert all(run.count(k) >= 2 for k in kinds), f"load never got going: {Counter((o.kind, o.result) for o in run.outcomes)}"
        run.bulk_in_flight.clear()
        assert run.bulk_in_flight.wait(10)
        time.sleep(ACCEPTED_AFTER_S + 0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)

        try:
            code = process.wait(timeout=EXIT_BOUND_S + 10)
        except Exception:
            code = None
        exited_after = time.monotonic() - signalled
        run.join(timeout=30)
        log_tail = log_path.read_text(errors="replace")[-4000:]

        summary = Counter((o.kind.split("-")[0], "before" if o.started < signalled else "after", o.result) for o in run.outcomes)
        print(f"launcher exit {code} {exited_after:.1f}s after SIGTERM; outcomes {dict(summary)}")
        bad = [o for o in run.outcomes if o.result == "bad"]
        in_flight_lost = [o for o in run.outcomes if o.started < signalled - ACCEPTED_AFTER_S and o.result != "ok"]
        assert not bad, f"{len(bad)} accepted requests failed, e.g. {bad[:5]}; outcomes {dict(summary)}\n{log_tail}"
        assert not in_flight_lost, (
            f"requests in flight at SIGTERM were not answered: {in_flight_lost[:5]}; outcomes {dict(summary)}\n{log_tail}"
        )
        assert code == 0, f"launcher exit status {code} ({exited_after:.1f}s after SIGTERM); outcomes {dict(summary)}\n{log_tail}"
        assert exited_after <= EXIT_BOUND_S, f"launcher took {exited_after:.1f}s to exit; drain bound {DRAIN_S}s\n{log_tail}"
        assert any(o.kind == "bulk" and o.started < signalled - ACCEPTED_AFTER_S and o.result == "ok" for o in run.outcomes)
    finally:
        for channel in channels:
            channel.close()
        stop(service)

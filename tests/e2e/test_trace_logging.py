"""Triton's trace and logging extensions on a real server, with stock tritonclient and a real OTLP receiver.

The receiver is an OTLP/HTTP collector in this process (protobuf ``ExportTraceServiceRequest`` over
HTTP, decoded with opentelemetry-proto): the server's OpenTelemetry SDK exports to it as it would to
a real collector. Two workers, so every setting must reach the worker that did not take the call.
"""

from __future__ import annotations

import gzip
import re
import shutil
import threading
import time
import warnings
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from loadtests.server import launch, stop, wait_ready

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto comes with the OTLP exporter")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from tritonclient.grpc import service_pb2 as pb  # noqa: E402
    from tritonclient.grpc import service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "mnist-lstm"
PHASES = ("front", "queue", "compute", "response")
SETTLE_S = 1.0  # a change reaches the other worker within a quarter second (serving/core/shared.py)


# ---------------------------------------------------------------- an OTLP/HTTP collector


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, which) if which else None


class Collector:
    """Receives OTLP/HTTP trace exports (``POST /v1/traces``) and keeps every span, decoded."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def add(self, request: Any) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    span = {
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": {a.key: _value(a.value) for a in s.attributes},
                        "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events],
                        "status": s.status.code,
                        "resource": resource,
                    }
                    with self.lock:
                        self.spans.append(span)

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            spans = list(self.spans)
        out: dict[str, list[dict[str, Any]]] = {}
        for span in spans:
            out.setdefault(span["trace_id"], []).append(span)
        return out

    def roots(self) -> list[dict[str, Any]]:
        return [s for spans in self.traces().values() for s in spans if s["name"] == "infer"]

    def wait_for_roots(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.roots()) < n:
            time.sleep(0.05)
        return self.roots()

    def clear(self) -> None:
        with self.lock:
            self.spans.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def served(trained_store, collector, tmp_path_factory):
    root = tmp_path_factory.mktemp("trace-logging")
    home = root / "bentoml"
    (home / "models").mkdir(parents=True)
    shutil.copytree(Path(trained_store.home) / "models" / MODEL, home / "models" / MODEL)
    env = {
        "SERVING_TRACE_URL": collector.url,
        "SERVING_STATE_DIR": str(root / "state"),
        "SERVING_WORKERS": "2",
        "SERVING_MODELS": MODEL,
        "SERVING_MODEL_POLL_S": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    service = launch(root / "server.log", str(home), extra_env=env)
    try:
        wait_ready(service, timeout=180)
        yield service
    finally:
        stop(service)


@pytest.fixture(scope="module")
def http(served):
    client = tritonclient_http.InferenceServerClient(served.http_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rpc(served):
    client = tritonclient_grpc.InferenceServerClient(served.grpc_target)
    yield client
    client.close()


def grpc_settings(message: dict[str, Any]) -> dict[str, Any]:
    """A TraceSettingResponse as tritonclient's as_json gives it, as plain values."""
    return {k: v.get("value", []) for k, v in message["settings"].items()}


def infer_all(served, http, rpc) -> None:
    """One request for the classifier over each protocol: v2 REST, v2 gRPC, /v1 JSON, TF Serving Predict."""
    images = np.zeros((1, 28, 28), np.float32)
    x = tritonclient_http.InferInput("images", [1, 28, 28], "FP32")
    x.set_data_from_numpy(images)
    http.infer(MODEL, [x], request_id="rest-1")
    y = tritonclient_grpc.InferInput("images", [1, 28, 28], "FP32")
    y.set_data_from_numpy(images)
    rpc.infer(MODEL, [y], request_id="grpc-1")
    answer = httpx.post(f"{served.http_url}/v1/classify", json={"model": "lstm", "images": [[[0] * 28] * 28] * 2}, timeout=30)
    assert answer.status_code == 200, answer.text
    from contract import tensors
    from contract.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "lstm"
    predict.inputs["images"].CopyFrom(tensors.array_to_tensor_proto(images))
    with grpc.insecure_channel(served.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict, timeout=30)


# ---------------------------------------------------------------- trace


def test_trace_settings_with_stock_tritonclient_over_both_protocols(http, rpc, collector):
    start = http.get_trace_settings()
    assert start == {
        "trace_level": ["OFF"],
        "trace_rate": "1000",
        "trace_count": "-1",
        "log_frequency": "0",
        "trace_file": "",
        "trace_mode": "opentelemetry",
        "url": collector.url,
        "resource": "service.name=digits",
        "bsp_max_queue_size": "2048",
        "bsp_schedule_delay": "200",
        "bsp_max_export_batch_size": "512",
    }
    changed = http.update_trace_settings(settings={"trace_rate": "5", "log_frequency": "1"})
    assert (changed["trace_rate"], changed["log_frequency"], changed["trace_level"]) == ("5", "1", ["OFF"])
    assert grpc_settings(rpc.get_trace_settings(as_json=True)) == {k: v if isinstance(v, list) else [v] for k, v in changed.items()}
    # a model's own settings, by public name over gRPC, read back by store name over HTTP; None clears one
    model = grpc_settings(rpc.update_trace_settings(model_name="lstm", settings={"trace_rate": "2", "trace_count": "7"}, as_json=True))
    assert (model["trace_rate"], model["trace_count"]) == (["2"], ["7"])
    assert http.get_trace_settings(model_name=MODEL)["trace_rate"] == "2" and http.get_trace_settings()["trace_rate"] == "5"
    cleared = rpc.update_trace_settings(model_name=MODEL, settings={"trace_rate": None, "trace_count": None}, as_json=True)
    assert grpc_settings(cleared)["trace_rate"] == ["5"] and grpc_settings(cleared)["trace_count"] == ["-1"]
    http.update_trace_settings(settings={"trace_rate": None, "log_frequency": None})
    assert http.get_trace_settings() == start


def check_trace(spans: list[dict[str, Any]], protocol: str | None, request_id: str | None, rows: int) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    assert sorted(by_name) == ["compute", "front", "infer", "queue", "response"], sorted(by_name)
    (root,) = by_name["infer"]
    assert root["parent"] == "" and root["kind"] == 2  # SPAN_KIND_SERVER
    attributes = root["attributes"]
    assert attributes["model_name"] == MODEL and attributes["model_version"].isdigit() and attributes["serving.rows"] == rows
    # /v1 and TF Serving do not (yet) name themselves to the data plane: their traces carry no protocol
    assert attributes.get("serving.protocol", protocol) == protocol
    assert attributes.get("request_id") == request_id
    assert root["resource"]["service.name"] == "digits" and root["status"] != 2  # not STATUS_CODE_ERROR
    phases = [by_name[name][0] for name in PHASES]
    for span in phases:
        assert span["parent"] == root["span_id"] and span["trace_id"] == root["trace_id"] and len(by_name[span["name"]]) == 1
        assert root["start"] <= span["start"] <= span["end"] <= root["end"], span["name"]
    for before, after in zip(phases, phases[1:]):
        assert before["end"] <= after["start"] + 1000, (before["name"], after["name"])  # in order (ns rounding aside)
    compute = by_name["compute"][0]
    assert compute["attributes"]["model_name"] == MODEL and compute["attributes"]["batch_size"] >= rows
    assert [name for name, _ in compute["events"]] == ["compute_input_end", "compute_infer_end"]


def test_every_protocol_exports_spans_while_tracing_is_on(served, http, rpc, collector):
    collector.clear()
    http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "log_frequency": "1"})
    time.sleep(SETTLE_S)
    try:
        infer_all(served, http, rpc)
        roots = collector.wait_for_roots(4)
        assert len(roots) == 4, f"{len(roots)} traces: {[r['attributes'] for r in roots]}"
        traces = collector.traces()
        found = {
            root["attributes"].get("request_id") or str(root["attributes"]["serving.rows"]): traces[root["trace_id"]] for root in roots
        }
        assert sorted(found) == ["1", "2", "grpc-1", "rest-1"], sorted(found)
        check_trace(found["rest-1"], "v2-rest", "rest-1", 1)
        check_trace(found["grpc-1"], "v2-grpc", "grpc-1", 1)
        check_trace(found["2"], "v1", None, 2)  # /v1/classify with two images
        check_trace(found["1"], "tfserving", None, 1)  # TF Serving's Predict
        assert len({root["trace_id"] for root in roots}) == 4 and len({root["span_id"] for root in roots}) == 4
    finally:
        http.update_trace_settings(settings={"trace_level": ["OFF"], "trace_rate": None, "log_frequency": None})
    time.sleep(SETTLE_S)
    collector.clear()
    infer_all(served, http, rpc)
    time.sleep(1.0)  # past the span processor's 200 ms schedule
    assert collector.roots() == []  # OFF on every worker


def fresh_grpc_infer(served, request_id: str) -> None:
    """One v2 gRPC request on a new connection: SO_REUSEPORT spreads new connections over the workers
    (a local subchannel pool: gRPC would otherwise share one connection between the channels)."""
    client = tritonclient_grpc.InferenceServerClient(served.grpc_target, channel_args=[("grpc.use_local_subchannel_pool", 1)])
    try:
        x = tritonclient_grpc.InferInput("images", [1, 28, 28], "UINT8").set_data_from_numpy(np.zeros((1, 28, 28), np.uint8))
        client.infer(MODEL, [x], request_id=request_id)
    finally:
        client.close()


def test_every_worker_applies_a_change_and_trace_count_holds_for_the_whole_server(served, http, rpc, collector):
    collector.clear()
    http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "log_frequency": "1"})
    time.sleep(SETTLE_S)
    try:
        pids: set[int] = set()
        for i in range(40):  # until both workers have traced a request (each is told within a quarter second)
            fresh_grpc_infer(served, f"w{i}")
            collector.wait_for_roots(i + 1, timeout=10)
            pids = {root["resource"]["process.pid"] for root in collector.roots()}
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"every trace came from worker {pids}"
        collector.clear()
        rpc.update_trace_settings(settings={"trace_count": "3"})
        time.sleep(SETTLE_S)
        for i in range(12):
            fresh_grpc_infer(served, f"n{i}")
        assert len(collector.wait_for_roots(3)) == 3
        time.sleep(1.0)  # past the span processor's schedule: nothing more comes
        assert len(collector.roots()) == 3 and http.get_trace_settings()["trace_count"] == "0"
    finally:
        http.update_trace_settings(settings={"trace_level": ["OFF"], "trace_rate": None, "trace_count": None, "log_frequency": None})


def test_a_model_can_be_traced_alone_with_its_tensors(served, http, rpc, collector):
    # the server OFF, one model on (a model that has no settings of its own follows the server's)
    collector.clear()
    http.update_trace_settings(
        model_name="lstm", settings={"trace_level": ["TIMESTAMPS", "TENSORS"], "trace_rate": "1", "log_frequency": "1"}
    )
    time.sleep(SETTLE_S)
    try:
        rpc.infer(
            MODEL, [tritonclient_grpc.InferInput("images", [1, 28, 28], "UINT8").set_data_from_numpy(np.zeros((1, 28, 28), np.uint8))]
        )
        (root,) = collector.wait_for_roots(1)
        front = next(s for s in collector.traces()[root["trace_id"]] if s["name"] == "front")
        assert front["events"] == [("input", {"name": "images", "datatype": "UINT8", "shape": (1, 28, 28)})]
    finally:
        http.update_trace_settings(model_name="lstm", settings={"trace_level": None, "trace_rate": None, "log_frequency": None})
    assert http.get_trace_settings(model_name="lstm")["trace_level"] == ["OFF"]


@pytest.mark.parametrize(
    "settings,model,words",
    [
        ({"trace_level": ["SOMETIMES"]}, None, "unknown trace level(s) ['SOMETIMES']"),
        ({"trace_level": ["OFF", "TENSORS"]}, None, "OFF goes alone"),
        ({"trace_rate": "often"}, None, "trace_rate must be an integer in [0, 4294967295]"),
        ({"trace_count": "-2"}, None, "trace_count must be an integer in [-1, 2147483647]"),
        ({"trace_file": "/tmp/trace.json"}, None, "trace_file cannot be set over the network"),
        ({"url": "http://127.0.0.1:1/v1/traces"}, None, "url is set when the server starts"),
        ({"trace_mode": "triton"}, None, "trace_mode is 'opentelemetry'"),
        ({"trace_levels": ["OFF"]}, None, "unknown trace setting 'trace_levels'"),
        ({"trace_rate": "1"}, "no-such-model", "no-such-model"),
    ],
)
def test_bad_trace_settings_are_refused_on_both_protocols(http, rpc, settings, model, words):
    before = http.get_trace_settings()
    for client, status in ((http, "404" if model else "400"), (rpc, "StatusCode.NOT_FOUND" if model else "StatusCode.INVALID_ARGUMENT")):
        with pytest.raises(InferenceServerException) as e:
            client.update_trace_settings(model_name=model, settings=settings)
        assert words in e.value.message() and str(e.value.status()) == status, (e.value.status(), e.value.message())
    assert http.get_trace_settings() == before


def test_bad_bodies_are_the_services_errors(served):
    url = f"{served.http_url}/v2/trace/setting"
    answer = httpx.post(url, content=b"{trace", timeout=10)
    assert answer.status_code == 400 and set(answer.json()) == {"error"} and "not valid JSON" in answer.json()["error"]
    answer = httpx.post(url, content=b"{}", headers={"content-type": "text/html"}, timeout=10)
    assert answer.status_code == 415 and set(answer.json()) == {"error"}
    answer = httpx.post(f"{served.http_url}/v2/logging", json=["log_info"], timeout=10)
    assert answer.status_code == 400 and answer.json() == {
        "error": "log settings are a JSON object of settings, such as {\"log_verbose_level\": 1}; got ['log_info']"
    }
    with grpc.insecure_channel(served.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.TraceSetting(
                pb.TraceSettingRequest(settings={"trace_rate": pb.TraceSettingRequest.SettingValue(value=["1", "2"])}), timeout=10
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "takes one value, got 2" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.LogSettings(pb.LogSettingsRequest(settings={"log_info": pb.LogSettingsRequest.SettingValue(uint32_param=1)}), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "log_info must be true or false, got 1" in e.value.details()


# ---------------------------------------------------------------- logging

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ I \d+ logs\.py:\d+\] log settings: log_info=True, ", re.MULTILINE)


def new_log(served, start: int) -> str:
    return served.log_path.read_text(errors="replace")[start:]


def test_log_settings_with_stock_tritonclient_over_both_protocols(served, http, rpc):
    defaults = {"log_file": "", "log_info": True, "log_warning": True, "log_error": True, "log_verbose_level": 0, "log_format": "default"}
    assert http.get_log_settings() == defaults
    mark = len(served.log_path.read_text(errors="replace"))
    try:
        changed = http.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
        assert changed == {**defaults, "log_verbose_level": 1, "log_format": "ISO8601"}
        as_grpc = rpc.get_log_settings(as_json=True)["settings"]
        assert as_grpc == {
            "log_file": {"string_param": ""},
            "log_info": {"bool_param": True},
            "log_warning": {"bool_param": True},
            "log_error": {"bool_param": True},
            "log_verbose_level": {"uint32_param": 1},
            "log_format": {"string_param": "ISO8601"},
        }
        time.sleep(0.3)
        assert ISO_LINE.search(new_log(served, mark)), new_log(served, mark)[-2000:]  # the worker's log changed format
        message = rpc.update_log_settings({"log_info": False, "log_warning": None})
        assert message.settings["log_info"].bool_param is False and message.settings["log_warning"].bool_param is True
        assert http.get_log_settings()["log_info"] is False
        mark = len(served.log_path.read_text(errors="replace"))
        http.update_log_settings({"log_error": True})  # an INFO line, and INFO is off now
        time.sleep(0.3)
        assert "log settings:" not in new_log(served, mark)
    finally:
        assert http.update_log_settings({k: v for k, v in defaults.items() if k != "log_file"}) == defaults
    assert rpc.get_log_settings(as_json=True)["settings"]["log_format"] == {"string_param": "default"}


@pytest.mark.parametrize(
    "settings,words",
    [
        ({"log_format": "xml"}, "log_format must be 'default' or 'ISO8601', got 'xml'"),
        ({"log_file": "/tmp/server.log"}, "log_file cannot be set over the network"),
        ({"log_levels": True}, "unknown log setting(s) ['log_levels']"),
    ],
)
def test_bad_log_settings_are_refused_on_both_protocols(http, rpc, settings, words):
    before = http.get_log_settings()
    for client in (http, rpc):
        with pytest.raises(InferenceServerException) as e:
            client.update_log_settings(settings)
        assert words in e.value.message() and str(e.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    with pytest.raises(InferenceServerException, match="log_verbose_level must be an integer >= 0"):
        http.update_log_settings({"log_verbose_level": -1})
    assert http.get_log_settings() == before

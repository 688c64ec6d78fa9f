"""Triton's trace and logging extensions without a server: settings, validation, sharing, sampling, spans."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from contract.errors import InvalidInput
from serving.core import logs, trace
from serving.core.batcher import CURRENT_TRACE, Batcher
from serving.core.dataplane import DataPlane
from serving.core.engine import Engine
from serving.core.registry import Registry
from serving.core.request import InferRequest, Tensor
from serving.settings import Settings
from serving.transport.restricted import Restricted, grpc_group, http_group
from tests.unit.serving.fakes import CLASSIFIER, DECODER

URL = "http://127.0.0.1:9/v1/traces"  # never reached: these tests keep the spans in memory


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"SERVING_STATE_DIR": str(tmp_path), "SERVING_TRACE_URL": URL, **env})


def in_memory(tracer: trace.Tracer):
    """Spans kept in memory instead of the OTLP exporter (set before tracing turns on, so it is used)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer.provider, tracer.spans = provider, provider.get_tracer("test")
    return exporter


# ---------------------------------------------------------------- trace settings


FIXED = {"trace_file": "", "trace_mode": "opentelemetry", "url": URL}


@pytest.mark.parametrize(
    "changes,words",
    [
        ([], "JSON object of settings"),
        ({"trace_level": "TIMESTAMPS"}, "must be a list of levels"),
        ({"trace_level": []}, "must be a list of levels"),
        ({"trace_level": ["TIMESTAMP"]}, "unknown trace level(s) ['TIMESTAMP']"),
        ({"trace_level": ["OFF", "TIMESTAMPS"]}, "OFF goes alone"),
        ({"trace_level": [1]}, "must be a list of levels"),
        ({"trace_rate": "ten"}, "trace_rate must be an integer in [0, 4294967295]"),
        ({"trace_rate": -1}, "trace_rate must be an integer in [0, 4294967295]"),
        ({"trace_rate": True}, "trace_rate must be an integer"),
        ({"trace_rate": "4294967296"}, "trace_rate must be an integer"),
        ({"trace_count": "-2"}, "trace_count must be an integer in [-1, 2147483647]"),
        ({"log_frequency": 1.5}, "log_frequency must be an integer"),
        ({"trace_file": "/tmp/trace.json"}, "trace_file cannot be set over the network"),
        ({"trace_mode": "triton"}, "trace_mode is 'opentelemetry'"),
        ({"url": "http://elsewhere:4318/v1/traces"}, "url is set when the server starts"),
        ({"trace_levle": ["OFF"]}, "unknown trace setting 'trace_levle'; the settings are trace_level, trace_rate"),
    ],
)
def test_bad_trace_settings_say_what_is_wrong(changes, words):
    with pytest.raises(InvalidInput) as e:
        trace.validate(changes, FIXED)
    assert words in str(e.value)


def test_trace_settings_as_triton_clients_send_them():
    assert trace.validate({"trace_level": ["TENSORS", "TIMESTAMPS"], "trace_rate": "1", "trace_count": 5}, FIXED) == {
        "trace_level": ["TIMESTAMPS", "TENSORS"],
        "trace_rate": 1,
        "trace_count": 5,
    }
    assert trace.validate({"trace_level": ["OFF"], "log_frequency": None}, FIXED) == {"trace_level": [], "log_frequency": None}
    assert trace.validate({"trace_file": "", "trace_mode": "opentelemetry", "url": URL}, FIXED) == {}  # GET's answer sent back


def test_trace_settings_start_from_the_settings_and_answer_as_triton(tmp_path):
    tracer = trace.Tracer(tmp_path, settings(tmp_path, SERVING_TRACE_RATE="7", SERVING_TRACE_COUNT="3"))
    assert tracer.current() == {
        "trace_level": ["OFF"],
        "trace_rate": "7",
        "trace_count": "3",
        "log_frequency": "0",
        "trace_file": "",
        "trace_mode": "opentelemetry",
        "url": URL,
        "resource": "service.name=digits",
        "bsp_max_queue_size": "2048",
        "bsp_schedule_delay": "5000",
        "bsp_max_export_batch_size": "512",
    }
    assert not tracer.active


def test_model_settings_override_the_servers_field_by_field_and_null_clears(tmp_path):
    tracer = trace.Tracer(tmp_path, settings(tmp_path))
    in_memory(tracer)
    tracer.update({"trace_rate": "10"})
    got = tracer.update({"trace_level": ["TIMESTAMPS"], "trace_count": "2"}, "mnist-lstm")
    assert (got["trace_level"], got["trace_rate"], got["trace_count"]) == (["TIMESTAMPS"], "10", "2")
    assert tracer.current()["trace_level"] == ["OFF"] and tracer.active  # only the model is traced
    assert tracer.view.of("mnist-lstm").count_owner == "mnist-lstm" and tracer.view.of("other") is tracer.view.server
    tracer.update({"trace_rate": "20"})  # the model follows the server's rate, which it never set
    assert tracer.current("mnist-lstm")["trace_rate"] == "20"
    tracer.update({"trace_level": None, "trace_count": None}, "mnist-lstm")
    assert tracer.current("mnist-lstm")["trace_level"] == ["OFF"] and not tracer.active
    tracer.update({"trace_rate": None})  # back to the start-up value
    assert tracer.current()["trace_rate"] == "1000"


def test_tracing_needs_a_collector(tmp_path):
    tracer = trace.Tracer(tmp_path, Settings.from_env({"SERVING_STATE_DIR": str(tmp_path)}))
    with pytest.raises(InvalidInput, match="needs an OpenTelemetry collector: start the server with SERVING_TRACE_URL"):
        tracer.update({"trace_level": ["TIMESTAMPS"]})
    assert tracer.current()["trace_level"] == ["OFF"]
    tracer.update({"trace_rate": "5"})  # what needs no collector still changes
    assert tracer.current()["trace_rate"] == "5"
    with pytest.raises(ValueError, match="SERVING_TRACE_LEVEL needs SERVING_TRACE_URL"):
        Settings.from_env({"SERVING_TRACE_LEVEL": "TIMESTAMPS"})
    with pytest.raises(ValueError, match="SERVING_TRACE_URL"):
        Settings.from_env({"SERVING_TRACE_URL": "localhost:4318"})


def test_workers_share_the_settings_and_the_count(tmp_path):
    """Two tracers over one state directory are two workers of one server."""
    one, two = trace.Tracer(tmp_path, settings(tmp_path)), trace.Tracer(tmp_path, settings(tmp_path))
    for t in (one, two):
        in_memory(t)
    one.update({"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "3"})
    assert two.current()["trace_level"] == ["TIMESTAMPS"]  # GET reads what any worker wrote
    two.document.refresh()  # what the watcher thread does within a quarter second
    assert two.active
    assert [one.take(""), two.take(""), one.take(""), two.take("")] == [True, True, True, False]
    assert one.current()["trace_count"] == "0"
    one.document.refresh()
    assert not one.active  # nothing left to take: the request path is back to one attribute read


def test_a_document_of_another_server_is_ignored(tmp_path):
    (tmp_path / trace.FILE).write_text('{"server": -1, "global": {"trace_rate": 1}}')
    assert trace.Tracer(tmp_path, settings(tmp_path)).current()["trace_rate"] == "1000"


# ---------------------------------------------------------------- sampling and spans


def traced_plane(tmp_path: Path, rows: int = 64) -> tuple[DataPlane, object]:
    engine = Engine(settings(tmp_path), Registry([CLASSIFIER, DECODER]))

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [np.tile(np.eye(10, dtype=np.float32)[3], (len(x), 1))]

    engine.batchers[CLASSIFIER.key] = Batcher(CLASSIFIER.store_name, run, max_batch_size=rows, max_queue=64)
    plane = DataPlane(engine)
    return plane, in_memory(plane.tracer)


def images(n: int = 1) -> InferRequest:
    return InferRequest([Tensor.of(np.zeros((n, 28, 28), np.uint8), "images")], "lstm", id="req-1")


def test_a_sampled_request_is_a_root_span_with_its_phases_in_order(tmp_path):
    plane, exporter = traced_plane(tmp_path)
    plane.tracer.update({"trace_level": ["TIMESTAMPS", "TENSORS"], "trace_rate": "1"})

    async def main() -> None:
        front = plane.tracer.front("test")
        assert front is not None
        await plane.infer(images(2), front)
        front.finish()
        front.finish()  # a second finish exports nothing more

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == ["compute", "front", "infer", "queue", "response"] and len(spans) == 5
    root = by_name["infer"]
    assert root.parent is None and dict(root.attributes) == {
        "model_name": "mnist-lstm",
        "model_version": "1700000000",
        "serving.rows": 2,
        "serving.protocol": "test",
        "request_id": "req-1",
    }
    for name in ("front", "queue", "compute", "response"):
        span = by_name[name]
        assert span.parent.span_id == root.context.span_id and span.context.trace_id == root.context.trace_id
    order = [by_name[n] for n in ("front", "queue", "compute", "response")]
    assert root.start_time <= order[0].start_time
    for before, after in zip(order, order[1:]):
        assert before.end_time <= after.start_time + 1000, (before.name, after.name)  # within a microsecond (rounding)
    assert order[-1].end_time <= root.end_time
    compute = by_name["compute"]
    assert compute.attributes["batch_size"] == 2 and compute.attributes["compute_infer_ns"] >= 0
    assert [e.name for e in compute.events] == ["compute_input_end", "compute_infer_end"]
    assert [dict(e.attributes) for e in by_name["front"].events] == [{"name": "images", "datatype": "UINT8", "shape": (2, 28, 28)}]
    assert {e.attributes["name"] for e in by_name["response"].events} == {"probabilities"}  # no verdict named


def test_rate_samples_one_in_n_and_count_stops_it(tmp_path):
    plane, exporter = traced_plane(tmp_path)
    plane.tracer.update({"trace_level": ["TIMESTAMPS"], "trace_rate": "3", "trace_count": "2"})

    async def main() -> None:
        for _ in range(12):
            await plane.infer(images())  # no front: the data plane starts and ends the trace

    asyncio.run(main())
    roots = [s for s in exporter.get_finished_spans() if s.name == "infer"]
    assert len(roots) == 2 and "serving.protocol" not in roots[0].attributes
    assert plane.tracer.current()["trace_count"] == "0" and not plane.tracer.active


def test_a_refused_request_is_a_trace_with_an_error(tmp_path):
    plane, exporter = traced_plane(tmp_path)
    plane.tracer.update({"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
    bad = InferRequest([Tensor.of(np.zeros((1, 27, 28), np.uint8), "images")], "lstm")
    with pytest.raises(InvalidInput):
        asyncio.run(plane.infer(bad))
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "infer"]
    assert root.status.status_code.name == "ERROR" and "27" in root.status.description
    assert [s.name for s in exporter.get_finished_spans()] == ["front", "infer"]


def test_a_bulk_request_has_its_own_compute_span(tmp_path, monkeypatch):
    plane, exporter = traced_plane(tmp_path)

    async def direct(rt, rows):  # the direct path: no batcher, so the data plane times it
        return np.tile(np.eye(10, dtype=np.float32)[3], (len(rows), 1))

    monkeypatch.setattr(plane.engine, "infer_direct", direct)
    plane.tracer.update({"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
    request = InferRequest([Tensor.of(np.zeros((5, 28, 28), np.uint8), "images")], "lstm", bulk=True)
    asyncio.run(plane.infer(request))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == ["compute", "front", "infer", "response"]
    assert dict(spans["compute"].attributes) == {"model_name": "mnist-lstm", "batch_size": 5, "direct": True}


def test_tracing_off_makes_no_trace(tmp_path, monkeypatch):
    plane, exporter = traced_plane(tmp_path)
    assert not plane.tracer.active and plane.tracer.front("v2-rest") is None

    def no_trace(*args, **kwargs):
        raise AssertionError("a trace was made while tracing is off")

    monkeypatch.setattr(trace.Trace, "__init__", no_trace)
    monkeypatch.setattr(plane.tracer, "sample", no_trace)
    asyncio.run(plane.infer(images()))
    assert exporter.get_finished_spans() == ()


def test_the_batcher_hands_its_own_timings_to_a_traced_request():
    seen = []

    class Recorder:
        def batched(self, model, enqueued, started, phases, rows):
            seen.append((model, enqueued <= started, len(phases), rows))

    async def main() -> None:
        batcher = Batcher("m", lambda x: [x], max_batch_size=8, max_queue=4)
        token = CURRENT_TRACE.set(Recorder())
        try:
            await batcher.submit(np.zeros((3, 2), np.float32))
        finally:
            CURRENT_TRACE.reset(token)
        await batcher.submit(np.zeros((1, 2), np.float32))  # not traced
        await batcher.close()

    asyncio.run(main())
    assert seen == [("m", True, 3, 3)]


# ---------------------------------------------------------------- log settings


@pytest.mark.parametrize(
    "changes,words",
    [
        ("log_info", "JSON object of settings"),
        ({"log_info": "yes"}, "log_info must be true or false, got 'yes'"),
        ({"log_error": 1}, "log_error must be true or false"),
        ({"log_verbose_level": -1}, "log_verbose_level must be an integer >= 0"),
        ({"log_verbose_level": True}, "log_verbose_level must be an integer >= 0"),
        ({"log_verbose_level": "1"}, "log_verbose_level must be an integer >= 0"),
        ({"log_format": "iso8601"}, "log_format must be 'default' or 'ISO8601'"),
        ({"log_file": "/etc/passwd"}, "log_file cannot be set over the network"),
        ({"log_level": "DEBUG"}, "unknown log setting(s) ['log_level']; the settings are log_file, log_info"),
    ],
)
def test_bad_log_settings_say_what_is_wrong(changes, words):
    with pytest.raises(InvalidInput) as e:
        logs.validate(changes)
    assert words in str(e.value)


def test_log_settings_start_from_serving_log_level():
    assert logs.defaults("INFO") == {
        "log_file": "",
        "log_info": True,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 0,
        "log_format": "default",
    }
    assert logs.defaults("DEBUG")["log_verbose_level"] == 1
    assert (logs.defaults("ERROR")["log_warning"], logs.defaults("ERROR")["log_error"]) == (False, True)


@pytest.fixture()
def log_handler():
    """A handler on the root logger (BentoML's are there in a worker), and the serving logger as it was."""
    handler = logging.StreamHandler()
    original = logging.Formatter("%(message)s")
    handler.setFormatter(original)
    root, serving = logging.getLogger(), logging.getLogger("serving")
    level = serving.level
    root.addHandler(handler)
    yield handler, original
    logs.apply(logs.defaults("INFO"))
    root.removeHandler(handler)
    serving.setLevel(level)


def test_log_settings_are_shared_and_applied_to_python_logging(tmp_path, log_handler):
    handler, original = log_handler
    one, two = logs.LogSettings(tmp_path, "INFO"), logs.LogSettings(tmp_path, "INFO")
    got = one.update({"log_verbose_level": 2, "log_info": False, "log_warning": None, "log_format": "ISO8601"})
    assert got == {**logs.defaults("INFO"), "log_verbose_level": 2, "log_info": False, "log_format": "ISO8601"}
    assert two.current() == got
    serving = logging.getLogger("serving.engine")
    assert serving.isEnabledFor(logging.DEBUG)

    def passes(level: int, name: str = "serving.engine") -> bool:
        return handler.filter(logging.LogRecord(name, level, __file__, 1, "m", None, None))

    assert passes(logging.DEBUG) and not passes(logging.INFO) and passes(logging.WARNING) and passes(logging.ERROR)
    assert passes(logging.INFO, "bentoml")  # the switches are the service's loggers'
    line = handler.format(logging.LogRecord("serving.engine", logging.WARNING, "/x/engine.py", 12, "hello", None, None))
    assert line.endswith(" engine.py:12] hello") and " W " in line and line[:20].endswith("Z")
    one.update({"log_format": "default", "log_verbose_level": 0, "log_info": True})
    assert handler.formatter is original and not serving.isEnabledFor(logging.DEBUG) and passes(logging.INFO)


def test_a_server_without_changes_keeps_its_start_up_level(tmp_path):
    serving = logging.getLogger("serving")
    level = serving.level
    logs.LogSettings(tmp_path, "WARNING")
    assert serving.level == level


# ---------------------------------------------------------------- restricted


def test_trace_and_logging_are_restricted_groups():
    assert http_group("GET", "/v2/trace/setting") == "trace"
    assert http_group("POST", "/v2/models/lstm/trace/setting") == "trace"
    assert http_group("POST", "/v2/logging") == "logging"
    assert http_group("POST", "/v2/models/lstm/infer") is None
    assert (grpc_group("TraceSetting"), grpc_group("LogSettings")) == ("trace", "logging")
    assert Restricted.parse("trace,logging:admin-key=s3cret").keys == {"trace": ("admin-key", "s3cret"), "logging": ("admin-key", "s3cret")}

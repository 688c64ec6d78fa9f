from __future__ import annotations

from loadtests import profiling

RAW = [
    "thread (0x1);<module> (w.py:1);Server.run (uvicorn/server.py:3);Session.run (onnxruntime/capi/x.py:200) 7",
    "thread (0x1);<module> (w.py:1);OpenTelemetryMiddleware.__call__ (opentelemetry/instrumentation/asgi/__init__.py:9);"
    "classify (serving/protocols/v1/classify.py:90);pixels_json (serving/protocols/v1/common.py:40);numbers_from_json (serving/protocols/codec.py:100) 5",
    "thread (0x1);<module> (w.py:1);OpenTelemetryMiddleware.__call__ (opentelemetry/instrumentation/asgi/__init__.py:9);"
    "Tracer.start_span (opentelemetry/trace/__init__.py:1) 3",
    "thread (0x1);<module> (w.py:1);Router.app (starlette/routing.py:10);Logger._log (logging/__init__.py:1600) 2",
    "thread (0x1);mystery (nowhere.py:1) 1",
    "not a sample line",
]


def test_categorize_takes_the_innermost_known_frame():
    total, counts = profiling.categorize(RAW)
    assert total == 18
    assert counts["ONNX Runtime session.run (the inference)"] == 7
    assert counts["request JSON -> numpy (serving.protocols.codec)"] == 5  # inside OTel's frame, but the leaf decides
    assert counts["OpenTelemetry tracing"] == 3
    assert counts["logging (access log, app log)"] == 2
    assert counts["other"] == 1


def test_categorize_empty():
    assert profiling.categorize([]) == (0, {})

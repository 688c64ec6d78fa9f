"""Hostile inputs per HTTP route and per gRPC method: each gets its 4xx (or gRPC code) in the API's error
shape with a short message, the server stays healthy, and the heavy ones leave the workers' RSS flat."""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..drivers.grpc import INFER_METHOD
from ..drivers.grpc import METHOD as PREDICT_METHOD
from .rawhttp import Answer, exchange, http_request
from .target import MiB, Target


@dataclass(frozen=True)
class Hostile:
    route: str
    name: str
    request: Any  # bytes or a writer
    status: int
    shape: str = "v1"  # v1: {"error", "type"}; v2: {"error"}; parser: uvicorn's own short plain-text 400
    heavy: bool = False


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _ico(png: bytes) -> bytes:
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


def _npy(shape: str, descr: str = "|u1", data: bytes = b"\x00" * 64) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


def _multipart(data: bytes, filename: str = "x.png", boundary: str = "reliability") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


PARSER_ANSWER = b"Invalid HTTP request received."  # uvicorn's plain-text 400 body
# Request framing the HTTP parser refuses itself (docs/reliability.md lists these; the probe checks each answer).
_JSON_POST = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
FRAMING_ERRORS: dict[str, bytes] = {
    "Content-Length: -1": _JSON_POST + b"Content-Length: -1\r\n\r\n{}",
    "Content-Length not a number": _JSON_POST + b"Content-Length: two\r\n\r\n{}",
    "two different Content-Lengths": _JSON_POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "Content-Length and Transfer-Encoding": _JSON_POST + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "chunk size not hex": _JSON_POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "space in a header name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "request line without a path": b"GET\r\n\r\n",
    "HTTP/3.0 on the request line": b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n",
}


def hostile_http(t: Target) -> list[Hostile]:
    limit = int(t.settings["max_body_bytes"])
    image = t.images[0]
    one = json.dumps({"model": "lstm", "images": image.tolist()}).encode()
    big_name = "m" * MiB
    post = http_request
    out: list[Hostile] = []
    # /v1/classify (JSON)
    c = "/v1/classify"
    out += [
        Hostile(c, "malformed JSON", post("POST", c, b'{"images": [[1, 2], '), 400),
        Hostile(c, "not an object", post("POST", c, b'"images"'), 400),
        Hostile(c, "invalid UTF-8", post("POST", c, b'{"images": "\xff\xfe"}'), 400),
        Hostile(c, "5,000-digit integer", post("POST", c, b'{"images": [' + b"9" * 5000 + b"]}"), 400),
        Hostile(c, "NaN pixels", post("POST", c, b'{"images": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}"), 400),
        Hostile(c, "wrong shape 27x28", post("POST", c, json.dumps({"images": [[0] * 28] * 27}).encode()), 400),
        Hostile(c, "nesting 100,000 deep", post("POST", c, b"[" * 100_000 + b"]" * 100_000), 413),
        Hostile(c, "10^6 tiny images", post("POST", c, b'{"images": [' + b",".join([b"[[0]]"] * 1_000_000) + b"]}"), 413, heavy=True),
        Hostile(c, "300 images (limit 256)", post("POST", c, json.dumps({"images": [[[0] * 28] * 28] * 300}).encode()), 413),
        Hostile(c, "1 MiB model name", post("POST", c, json.dumps({"model": big_name, "images": image.tolist()}).encode()), 404),
        Hostile(
            c,
            "declared body over the limit",
            f"POST {c} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode(),
            413,
        ),
        Hostile(c, "100 MB chunked body", post("POST", c, b" " * (100 * 10**6), chunked=True), 413, heavy=True),
        Hostile(c, "PATCH (no such method)", post("PATCH", c, one), 405),
        Hostile(c, "text/plain body", post("POST", c, b"hello", content_type="text/plain"), 400),
        Hostile(c, "a type the route does not take", post("POST", c, one, content_type="image/png"), 415),
    ]
    # /v1/classify/image (multipart)
    ci = "/v1/classify/image"
    for name, data, status, heavy in [
        ("ICO embedding a 13000x13000 PNG", _ico(_png_header(13_000, 13_000)), 400, True),
        ("PNG declaring 40000x40000", _png_header(40_000, 40_000), 413, True),
        ("random bytes", random.Random(1).randbytes(2000), 400, False),
        ("truncated PNG", _png_header(64, 64)[:40], 400, False),
        ("empty file", b"", 400, False),
    ]:
        body, ctype = _multipart(data)
        out.append(Hostile(ci, name, post("POST", ci, body, content_type=ctype), status, heavy=heavy))
    out += [
        Hostile(ci, "multipart without a boundary", post("POST", ci, b"--x\r\n\r\n", content_type="multipart/form-data"), 400),
        Hostile(ci, "multipart, bad data", post("POST", ci, b"garbage", content_type="multipart/form-data; boundary=b"), 400),
        Hostile(ci, "JSON to the upload route", post("POST", ci, b"", content_type="application/json"), 415),
        Hostile(ci, "no image field", post("POST", ci, b"--b\r\n\r\n--b--\r\n", content_type="multipart/form-data; boundary=b"), 400),
    ]
    # /v1/classify/batch (.npy)
    cb = "/v1/classify/batch"
    over = io.BytesIO()
    np.save(over, np.zeros((limit // 784 + 100, 28, 28), dtype=np.uint8))
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    npy_ct = "application/octet-stream"
    out += [
        Hostile(cb, ".npy with negative dims (-1, -28, 28)", post("POST", cb, _npy("(-1, -28, 28)"), npy_ct), 400),
        Hostile(cb, ".npy with negative dims (-1, 28, 28)", post("POST", cb, _npy("(-1, 28, 28)"), npy_ct), 400),
        Hostile(cb, ".npy declaring 10^9 x 10^9 x 28", post("POST", cb, _npy("(1000000000, 1000000000, 28)"), npy_ct), 400),
        Hostile(cb, ".npy pickled objects", post("POST", cb, pickled.getvalue(), npy_ct), 400),
        Hostile(cb, ".npy complex dtype", post("POST", cb, _npy("(1, 28, 28)", "<c8", b"\x00" * 784 * 8), npy_ct), 400),
        Hostile(cb, ".npy truncated", post("POST", cb, _npy("(10, 28, 28)"), npy_ct), 400),
        Hostile(cb, "not .npy at all", post("POST", cb, b"hello world", npy_ct), 400),
        Hostile(cb, ".npy over the body limit (declared)", post("POST", cb, over.getvalue(), npy_ct), 413, heavy=True),
        Hostile(cb, ".npy over the body limit (chunked)", post("POST", cb, over.getvalue(), npy_ct, chunked=True), 413, heavy=True),
    ]
    # /v1/generate, /v1/generate/sample, /v1/generate/manifold, /v1/models
    g = "/v1/generate"
    out += [
        Hostile(g, "z with NaN", post("POST", g, b'{"z": [[NaN, 0]]}'), 400),
        Hostile(g, "z 10^6 rows", post("POST", g, b'{"z": [' + b",".join([b"[0,0]"] * 1_000_000) + b"]}"), 413, heavy=True),
        Hostile(g, "unknown format", post("POST", g, b'{"z": [[0, 0]], "format": "gif"}'), 400),
        Hostile("/v1/generate/sample", "n = 10^9", post("POST", "/v1/generate/sample", b'{"n": 1000000000}'), 413),
        Hostile("/v1/generate/sample", "n = -1", post("POST", "/v1/generate/sample", b'{"n": -1}'), 400),
        Hostile("/v1/generate/manifold", "n = 1000", post("GET", "/v1/generate/manifold?n=1000", content_type=None), 413),
        Hostile("/v1/generate/manifold", "scale = 0", post("GET", "/v1/generate/manifold?scale=0", content_type=None), 400),
        Hostile("/v1/generate/manifold", "dims = x,y", post("GET", "/v1/generate/manifold?dims=x,y", content_type=None), 400),
        Hostile("/v1/models/{name}", "10 KB name", post("GET", "/v1/models/" + "m" * 10_000, content_type=None), 404),
        # over 64 KiB, uvicorn's HTTP parser refuses the request line itself (plain text, before any app code)
        Hostile("/v1/models/{name}", "1 MiB name (URL)", post("GET", "/v1/models/" + big_name, content_type=None), 400, "parser"),
        Hostile("/v1/models/{name}/labels/{label}", "control off", post("PUT", "/v1/models/lstm/labels/stable", b'{"version": "1"}'), 403),
        Hostile("(any)", "1 MiB of headers", post("GET", "/v1/models", content_type=None, headers=[("X-Big", "a" * MiB)]), 431),
        Hostile("(any)", "unknown path", post("GET", "/nope/" + "x" * 2000, content_type=None), 404),
        Hostile("(any)", "POST /readyz", post("POST", "/readyz", b""), 405),
    ]
    # HTTP/1.1 framing errors: uvicorn's parser (httptools) refuses them before any application code runs, with its
    # own plain-text 400 "Invalid HTTP request received." and a closed connection; BentoML offers no hook to shape it
    # (docs/reliability.md, "Known limits", lists exactly these).
    out += [Hostile("(framing)", name, raw, 400, "parser") for name, raw in FRAMING_ERRORS.items()]
    # /v2 REST
    v = "/v2/models/mnist-lstm/infer"
    header = json.dumps(
        {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "parameters": {"binary_data_size": 3136}}]}
    ).encode()
    out += [
        Hostile(v, "malformed JSON", post("POST", v, b'{"inputs": ['), 400, "v2"),
        Hostile(
            v,
            "negative shape",
            post("POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28], "data": [0]}]}).encode()),
            400,
            "v2",
        ),
        Hostile(
            v,
            "shape 10^9 rows",
            post(
                "POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [10**9, 28, 28], "data": [0]}]}).encode()
            ),
            413,
            "v2",
        ),
        Hostile(
            v,
            "BYTES datatype",
            post(
                "POST", v, json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1, 28, 28], "data": ["a"]}]}).encode()
            ),
            400,
            "v2",
        ),
        Hostile(
            v,
            "binary size mismatch",
            post("POST", v, header + b"\x00" * 100, npy_ct, headers=[("Inference-Header-Content-Length", str(len(header)))]),
            400,
            "v2",
        ),
        Hostile(
            v,
            "header length past the body",
            post("POST", v, header, npy_ct, headers=[("Inference-Header-Content-Length", "999999")]),
            400,
            "v2",
        ),
        Hostile(
            v,
            "10^6 values",
            post(
                "POST",
                v,
                b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": ['
                + b",".join([b"0"] * 1_000_000)
                + b"]}]}",
            ),
            413,
            "v2",
            heavy=True,
        ),
        Hostile("/v2/models/{name}", "10 KB name", post("GET", "/v2/models/" + "m" * 10_000, content_type=None), 404, "v2"),
        Hostile(
            "/v2/repository/models/{name}/load", "control off", post("POST", "/v2/repository/models/mnist-lstm/load", b"{}"), 403, "v2"
        ),
    ]
    # the statistics, shared memory and compression extensions
    stats, reg = "/v2/models/{name}/stats", "/v2/systemsharedmemory/region/{region}/register"
    shm_input = {"shared_memory_region": "nowhere", "shared_memory_byte_size": 3136}
    zeros = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(zeros.compress(bytes(MiB)) for _ in range(256)) + zeros.flush()  # 256 MiB of zeros in ~256 KB
    out += [
        Hostile(stats, "unknown model", post("GET", "/v2/models/no-such-model/stats", content_type=None), 404, "v2"),
        Hostile(stats, "unknown version", post("GET", "/v2/models/mnist-lstm/versions/999/stats", content_type=None), 404, "v2"),
        Hostile(
            reg, "key outside /dev/shm", post("POST", reg.format(region="r"), b'{"key": "../../etc/passwd", "byte_size": 16}'), 400, "v2"
        ),
        Hostile(reg, "no such key", post("POST", reg.format(region="r"), b'{"key": "/no-such-object", "byte_size": 16}'), 400, "v2"),
        Hostile(reg, "negative size", post("POST", reg.format(region="r"), b'{"key": "/x", "byte_size": -1}'), 400, "v2"),
        Hostile(reg, "not JSON", post("POST", reg.format(region="r"), b"{key"), 400, "v2"),
        Hostile(
            "/v2/systemsharedmemory/region/{region}/status",
            "unknown region",
            post("GET", "/v2/systemsharedmemory/region/nowhere/status", content_type=None),
            404,
            "v2",
        ),
        Hostile(
            v,
            "input in an unknown region",
            post(
                "POST",
                v,
                json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "parameters": shm_input}]}).encode(),
            ),
            404,
            "v2",
        ),
        Hostile(c, "gzip bomb (256 MiB of zeros)", post("POST", c, bomb, headers=[("Content-Encoding", "gzip")]), 413, heavy=True),
        Hostile(c, "not gzip", post("POST", c, b"plain text", headers=[("Content-Encoding", "gzip")]), 400),
        Hostile(c, "Content-Encoding br", post("POST", c, one, headers=[("Content-Encoding", "br")]), 415),
        Hostile(v, "gzip bomb (256 MiB of zeros)", post("POST", v, bomb, headers=[("Content-Encoding", "gzip")]), 413, "v2", heavy=True),
    ]
    # the logging and trace extensions (settings that change the running server: each of these is refused)
    logging_, tr, model_tr = "/v2/logging", "/v2/trace/setting", "/v2/models/{name}/trace/setting"
    out += [
        Hostile(logging_, "negative verbose level", post("POST", logging_, b'{"log_verbose_level": -1}'), 400, "v2"),
        Hostile(logging_, "log_info as a string", post("POST", logging_, b'{"log_info": "yes"}'), 400, "v2"),
        Hostile(logging_, "a log file path", post("POST", logging_, b'{"log_file": "/etc/passwd"}'), 400, "v2"),
        Hostile(logging_, "unknown format", post("POST", logging_, b'{"log_format": "xml"}'), 400, "v2"),
        Hostile(logging_, "unknown setting", post("POST", logging_, b'{"log_level": "DEBUG"}'), 400, "v2"),
        Hostile(logging_, "not an object", post("POST", logging_, b"[1, 2]"), 400, "v2"),
        Hostile(logging_, "not JSON", post("POST", logging_, b"{log"), 400, "v2"),
        Hostile(tr, "unknown level", post("POST", tr, b'{"trace_level": ["ALL"]}'), 400, "v2"),
        Hostile(tr, "OFF with another level", post("POST", tr, b'{"trace_level": ["OFF", "TIMESTAMPS"]}'), 400, "v2"),
        Hostile(tr, "rate not a number", post("POST", tr, b'{"trace_rate": "often"}'), 400, "v2"),
        Hostile(tr, "count below -1", post("POST", tr, b'{"trace_count": "-5"}'), 400, "v2"),
        Hostile(tr, "a trace file path", post("POST", tr, b'{"trace_file": "/etc/passwd"}'), 400, "v2"),
        Hostile(tr, "another collector url", post("POST", tr, b'{"url": "http://10.0.0.1:4318/v1/traces"}'), 400, "v2"),
        Hostile(tr, "5,000-digit rate", post("POST", tr, b'{"trace_rate": "' + b"9" * 5000 + b'"}'), 400, "v2"),
        Hostile(model_tr, "unknown model", post("POST", "/v2/models/no-such-model/trace/setting", b"{}"), 404, "v2"),
        Hostile(model_tr, "10 KB model name", post("GET", "/v2/models/" + "m" * 10_000 + "/trace/setting", content_type=None), 404, "v2"),
    ]
    return out


def check_shape(answer: Answer, shape: str) -> str:
    """'' when the body is the API's error shape with a short message, else what is wrong."""
    if shape == "parser":
        return "" if answer.body.strip() == PARSER_ANSWER else f"{answer.body[:120]!r} is not the parser's {PARSER_ANSWER!r}"
    body = answer.json()
    want = {"error", "type"} if shape == "v1" else {"error"}
    if not isinstance(body, dict) or set(body) != want or not isinstance(body.get("error"), str):
        return f"body {answer.body[:120]!r} is not {sorted(want)}"
    if len(answer.body) > 2000:
        return f"error body of {len(answer.body)} bytes (echoes the input?)"
    return ""


def hostile_probes(t: Target, rss_growth_mb: float) -> None:
    baseline = t.rss_mb()
    for h in hostile_http(t):
        answer = exchange(t.port, h.request, timeout=60)
        problem = "" if answer.status == h.status else f"status {answer.status or answer.error}"
        problem = problem or check_shape(answer, h.shape)
        ok, why = t.healthy()
        got = f"{answer.status}" + (f" ({problem})" if problem else "") + ("" if ok else f"; unhealthy: {why}")
        if h.heavy:
            rss = t.rss_mb()
            grew = rss - baseline
            got += f"; RSS {rss:.0f} MB ({grew:+.0f})"
            ok = ok and grew < rss_growth_mb
        want = f"{h.status} + " + ("the parser's plain text" if h.shape == "parser" else "error shape")
        t.add(f"HTTP {h.route}: {h.name}", 1, want, got, not problem and ok)
    for name, method, request, code, heavy in hostile_grpc(t):
        got_code, message = grpc_call(t.grpc, method, request)
        ok, why = t.healthy()
        problem = "" if got_code == code else f"{got_code}"
        if len(message) > 1000:
            problem = (problem + "; " if problem else "") + f"message of {len(message)} chars"
        got = (got_code + (f" ({problem})" if problem else "")) + ("" if ok else f"; unhealthy: {why}")
        if heavy:
            rss = t.rss_mb()
            got += f"; RSS {rss:.0f} MB ({rss - baseline:+.0f})"
            ok = ok and rss - baseline < rss_growth_mb
        t.add(f"gRPC {method.rsplit('/', 1)[1]}: {name}", 1, code, got, not problem and ok)


def hostile_grpc(t: Target) -> list[tuple[str, str, bytes, str, bool]]:
    from contract.protos.inference import grpc_service_pb2 as v2pb
    from contract.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    predict, infer = PREDICT_METHOD, INFER_METHOD

    def predict_req(
        name: str = "mnist-lstm",
        dims: Sequence[int] = (1, 28, 28),
        dtype: int = types_pb2.DT_FLOAT,
        floats: Sequence[float] = (0.5,),
        content: bytes | None = None,
    ) -> bytes:
        r = predict_pb2.PredictRequest()
        r.model_spec.name = name
        tensor = tensor_pb2.TensorProto(
            dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
        )
        if content is not None:
            tensor.tensor_content = content
        else:
            tensor.float_val.extend(floats)
        r.inputs["images"].CopyFrom(tensor)
        return r.SerializeToString()

    def infer_req(
        name: str = "mnist-lstm", shape: Sequence[int] = (1, 28, 28), datatype: str = "FP32", raw: bytes | None = b"\x00" * 3136
    ) -> bytes:
        r = v2pb.ModelInferRequest(model_name=name)
        r.inputs.add(name="images", datatype=datatype, shape=list(shape))
        if raw is not None:
            r.raw_input_contents.append(raw)
        return r.SerializeToString()

    junk = random.Random(2).randbytes(4000)
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = "m" * MiB
    return [
        ("undecodable bytes", predict, junk, "INVALID_ARGUMENT", False),
        ("85,000x28x28 declared, 1 value", predict, predict_req(dims=(85_000, 28, 28)), "RESOURCE_EXHAUSTED", True),
        ("negative dimension", predict, predict_req(dims=(-1, 28, 28)), "INVALID_ARGUMENT", False),
        ("tensor_content size mismatch", predict, predict_req(content=b"\x00" * 100), "INVALID_ARGUMENT", False),
        ("DT_STRING", predict, predict_req(dtype=types_pb2.DT_STRING), "INVALID_ARGUMENT", False),
        ("NaN values", predict, predict_req(floats=[float("nan")] * 784), "INVALID_ARGUMENT", False),
        ("1 MiB model name", predict, predict_req(name="m" * MiB), "NOT_FOUND", False),
        ("message over 16 MiB", predict, predict_req(content=b"\x00" * (17 * MiB)), "RESOURCE_EXHAUSTED", True),
        (
            "GetModelMetadata, 1 MiB name",
            "/tensorflow.serving.PredictionService/GetModelMetadata",
            meta.SerializeToString(),
            "NOT_FOUND",
            False,
        ),
        ("Classify", "/tensorflow.serving.PredictionService/Classify", b"", "UNIMPLEMENTED", False),
        ("undecodable bytes", infer, junk, "INVALID_ARGUMENT", False),
        ("10^9 rows declared", infer, infer_req(shape=(10**9, 28, 28)), "RESOURCE_EXHAUSTED", False),
        ("negative shape", infer, infer_req(shape=(-1, 28, 28)), "INVALID_ARGUMENT", False),
        ("raw size mismatch", infer, infer_req(raw=b"\x00" * 10), "INVALID_ARGUMENT", False),
        ("BYTES datatype", infer, infer_req(datatype="BYTES"), "INVALID_ARGUMENT", False),
        ("1 MiB model name", infer, infer_req(name="m" * MiB), "NOT_FOUND", False),
        (
            "ModelStatistics, unknown model",
            "/inference.GRPCInferenceService/ModelStatistics",
            v2pb.ModelStatisticsRequest(name="no-such-model").SerializeToString(),
            "NOT_FOUND",
            False,
        ),
        (
            "SystemSharedMemoryRegister, key outside /dev/shm",
            "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
            v2pb.SystemSharedMemoryRegisterRequest(name="r", key="../etc/passwd", byte_size=16).SerializeToString(),
            "INVALID_ARGUMENT",
            False,
        ),
        ("input in an unknown region", infer, _shm_infer(v2pb), "NOT_FOUND", False),
        (
            "LogSettings, log_info as a string",
            "/inference.GRPCInferenceService/LogSettings",
            v2pb.LogSettingsRequest(settings={"log_info": v2pb.LogSettingsRequest.SettingValue(string_param="yes")}).SerializeToString(),
            "INVALID_ARGUMENT",
            False,
        ),
        (
            "TraceSetting, two rates",
            "/inference.GRPCInferenceService/TraceSetting",
            v2pb.TraceSettingRequest(settings={"trace_rate": v2pb.TraceSettingRequest.SettingValue(value=["1", "2"])}).SerializeToString(),
            "INVALID_ARGUMENT",
            False,
        ),
        (
            "TraceSetting, unknown model",
            "/inference.GRPCInferenceService/TraceSetting",
            v2pb.TraceSettingRequest(model_name="no-such-model").SerializeToString(),
            "NOT_FOUND",
            False,
        ),
        (
            "RepositoryModelLoad, control off",
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            v2pb.RepositoryModelLoadRequest(model_name="mnist-lstm").SerializeToString(),
            "PERMISSION_DENIED",
            False,
        ),
    ]


def _shm_infer(v2pb: Any) -> bytes:
    r = v2pb.ModelInferRequest(model_name="mnist-lstm")
    tensor = r.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    tensor.parameters["shared_memory_region"].string_param = "nowhere"
    tensor.parameters["shared_memory_byte_size"].int64_param = 3136
    return bytes(r.SerializeToString())


def grpc_call(target: str, method: str, request: bytes, timeout: float = 30.0) -> tuple[str, str]:
    """(status code name, details) of one unary call with raw request bytes."""
    import grpc

    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(request, timeout=timeout)
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""

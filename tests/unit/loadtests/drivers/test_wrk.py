from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from loadtests import workload
from loadtests.drivers import wrk


def digit() -> np.ndarray:
    img = np.zeros((28, 28), dtype=np.uint8)
    img[4:24, 12:16] = 255
    img[10, 3] = 128
    return img


# ---------------------------------------------------------------- bodies


def test_ours_body_is_the_http_drivers_classify_body():
    img = digit()
    body = wrk.ours_body(img, "lstm")
    assert body == workload.classify_body(workload.images_json(img), "lstm")
    doc = json.loads(body)
    assert doc["model"] == "lstm" and np.array_equal(np.array(doc["images"], dtype=np.uint8), img[None])


def test_triton_body_is_kserve_v2_fp32_one_image_scaled():
    img = digit()
    doc = json.loads(wrk.triton_body(img, "images"))
    (tensor,) = doc["inputs"]
    assert tensor["name"] == "images" and tensor["datatype"] == "FP32" and tensor["shape"] == [1, 28, 28]
    assert len(tensor["data"]) == 784
    np.testing.assert_allclose(np.array(tensor["data"]).reshape(28, 28), img / 255.0, atol=1e-4)


def test_textbook_body_is_bentoml_json_for_one_ndarray_argument():
    img = digit()
    doc = json.loads(wrk.textbook_body(img))
    assert list(doc) == ["images"]
    x = np.array(doc["images"], dtype=np.float32)
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x[0], img / 255.0, atol=1e-4)


def test_numbers_are_compact():
    assert wrk._num(0.0) == "0" and wrk._num(1.0) == "1"
    assert wrk._num(128 / 255) == "0.502" and wrk._num(0.25) == "0.25"


def test_bodies_reject_anything_but_one_28x28_image():
    with pytest.raises(ValueError):
        wrk.triton_body(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError):
        wrk.textbook_body(np.full((28, 28), 300))


def test_requests_for_image_paths():
    specs = wrk.requests_for_image(digit(), model="lstm", triton_model="mnist-lstm")
    assert {k: s.path for k, s in specs.items()} == {
        "ours": "/v1/classify",
        "triton": "/v2/models/mnist-lstm/infer",
        "textbook": "/predict",
    }
    assert all(s.method == "POST" and s.content_type == "application/json" for s in specs.values())


# ---------------------------------------------------------------- Lua script and wrk output


def test_v2_binary_spec_is_a_json_header_then_raw_fp32():
    spec = wrk.v2_binary_spec(digit(), "mnist-lstm")
    length = int(dict(spec.headers)["Inference-Header-Content-Length"])
    header = json.loads(spec.body[:length])
    assert header["inputs"][0] == {"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "parameters": {"binary_data_size": 3136}}
    np.testing.assert_array_equal(np.frombuffer(spec.body[length:], "<f4").reshape(28, 28), digit() / np.float32(255.0))
    assert spec.path == "/v2/models/mnist-lstm/infer" and spec.content_type == "application/octet-stream"


def test_lua_script_sets_extra_headers():
    script = wrk.lua_script("/tmp/x/body", "application/octet-stream", "POST", [("Inference-Header-Content-Length", "99")])
    assert "wrk.headers[ [[\nInference-Header-Content-Length]] ] = [[\n99]]" in script


def test_lua_string_survives_closing_brackets_and_leading_newline():
    assert wrk._lua_string("abc") == "[[\nabc]]"
    assert wrk._lua_string("a]]b") == "[=[\na]]b]=]"
    assert wrk._lua_string("a]]b]=]c") == "[==[\na]]b]=]c]==]"


def test_lua_script_posts_the_body_file_and_prints_one_json_line():
    script = wrk.lua_script("/tmp/x/body", "application/json", "POST")
    assert 'io.open([[\n/tmp/x/body]], "rb")' in script
    assert "wrk.method = [[\nPOST]]" in script
    assert 'wrk.headers["Content-Type"] = [[\napplication/json]]' in script
    for q in (50, 90, 99):
        assert f"latency:percentile({q})" in script
    assert "function response(status, headers, body)" in script and "status < 200 or status > 299" in script
    assert 't:get("non2xx")' in script and "function setup(thread)" in script
    assert f'io.write("{wrk.MARKER}{{"' in script


def wrk_line(**over) -> str:
    raw = {
        "requests": 5000.0,
        "duration_us": 5_000_000.0,
        "bytes": 123.0,
        "connect": 0.0,
        "read": 1.0,
        "write": 0.0,
        "status": 10.0,
        "timeout": 2.0,
        "non2xx": 10.0,
        "first_non2xx_status": 503.0,
        "p50_us": 1500.0,
        "p90_us": 3000.0,
        "p99_us": 9000.0,
        "mean_us": 1800.5,
        "max_us": 20000.0,
        "min_us": 300.0,
    }
    raw.update(over)
    return wrk.MARKER + json.dumps(raw).replace(" ", "")


def test_parse_wrk_output():
    out = "Running 5s test @ http://127.0.0.1:1/x\n  1 threads and 32 connections\n" + wrk_line() + "\n"
    r = wrk.parse_wrk_output(out)
    assert r["requests"] == 5000 and r["non2xx"] == 10 and r["errors"] == 3
    assert r["rps"] == pytest.approx(4990 / 5.0)
    assert (r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]) == (1.5, 3.0, 9.0, 20.0)
    assert r["mean_ms"] == pytest.approx(1.8005)
    assert r["socket_errors"] == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert r["first_non2xx_status"] == 503 and r["seconds"] == 5.0


def test_parse_wrk_output_without_answers_or_with_nan():
    r = wrk.parse_wrk_output(wrk_line(requests=0.0, non2xx=0.0, mean_us=None, p50_us=0.0))
    assert r["rps"] == 0.0 and r["p50_ms"] is None and r["mean_ms"] is None
    with pytest.raises(wrk.WrkFailed):
        wrk.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_clamps_threads_and_uses_whole_seconds():
    cmd = wrk.wrk_command("http://127.0.0.1:9/p", "/s.lua", 1, 5, 4, 9.6, "/usr/bin/wrk")
    assert cmd == ["/usr/bin/wrk", "-t", "1", "-c", "1", "-d", "5s", "--timeout", "10s", "-s", "/s.lua", "http://127.0.0.1:9/p"]


def test_missing_wrk_says_how_to_install(monkeypatch):
    monkeypatch.setattr(wrk.shutil, "which", lambda name: None)
    with pytest.raises(wrk.WrkNotFound, match="apt-get install wrk"):
        wrk.run_wrk("http://127.0.0.1:9", "/", b"{}", duration_s=1)


def test_run_wrk_rejects_silly_arguments():
    with pytest.raises(ValueError):
        wrk.run_wrk("http://127.0.0.1:9", "/", b"{}", connections=0)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_run_wrk_against_a_tiny_local_server():
    """The generated script runs in the real wrk: one second against a stdlib server on 127.0.0.1."""
    seen: list[bytes] = []
    headers: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if len(seen) < 3:
                seen.append(body)
                headers.append(self.headers.get("Inference-Header-Content-Length"))
            status = 200 if self.headers["Content-Type"] == "application/json" else 415
            answer = b'{"ok":true}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        r = wrk.run_wrk(url, "/v1/classify", b'{"images":[]}', connections=2, duration_s=1, threads=1)
        assert seen and seen[0] == b'{"images":[]}'
        assert r["requests"] > 0 and r["rps"] > 0 and r["non2xx"] == 0 and r["errors"] == 0
        assert r["p50_ms"] is not None and r["p50_ms"] <= r["p99_ms"]
        spec = wrk.v2_binary_spec(digit())
        seen.clear(), headers.clear()
        wrk.run_wrk(url, spec.path, spec.body, "application/json", connections=1, duration_s=1, headers=spec.headers)
        assert seen[0] == spec.body and headers[0] == dict(spec.headers)["Inference-Header-Content-Length"]
        bad = wrk.run_wrk(url, "/", b"x", content_type="text/plain", connections=1, duration_s=1)
        assert bad["non2xx"] == bad["requests"] > 0 and bad["rps"] == 0 and bad["first_non2xx_status"] == 415
    finally:
        server.shutdown()
        server.server_close()

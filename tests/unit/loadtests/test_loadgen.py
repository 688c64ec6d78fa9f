from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from loadtests import loadgen, workload


def test_build_request_is_keep_alive_http11_with_length():
    raw = loadgen.build_request("POST", "127.0.0.1:3000", "/v1/classify", b'{"images":[]}')
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/classify HTTP/1.1"
    assert "Host: 127.0.0.1:3000" in lines and "Connection: keep-alive" in lines
    assert "Content-Length: 13" in lines and body == b'{"images":[]}'
    get = loadgen.build_request("GET", "h:1", "/v1/models")
    assert b"Content-Length" not in get and get.endswith(b"\r\n\r\n")


def read(data: bytes) -> tuple[int, int, bool]:
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await loadgen.read_response(reader)

    return asyncio.run(go())


def test_read_response_content_length_and_close():
    assert read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello") == (200, 5, False)
    assert read(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}") == (500, 2, True)


def test_read_response_chunked():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
    assert read(data) == (200, 8, False)


def test_percentile_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([], 50) is None


def test_closed_loop_against_a_tiny_server():
    async def go():
        async def handle(reader, writer):
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        request = loadgen.build_request("GET", f"127.0.0.1:{port}", "/")
        async with server:
            return await loadgen.run_closed_loop(url, [request], concurrency=3, warmup_s=0.1, duration_s=0.4)

    result = asyncio.run(go())
    assert result.requests > 10 and result.errors == 0
    assert result.rps == pytest.approx(result.requests / 0.4)
    assert result.p50_ms is not None and result.p50_ms <= result.p99_ms
    assert result.client_cpu_s >= 0


def test_classify_body_is_the_contract_json():
    image = (np.arange(784) % 256).astype(np.uint8).reshape(28, 28)
    body = json.loads(workload.classify_body(workload.images_json(image), "lstm"))
    assert body["model"] == "lstm"
    assert np.array_equal(np.array(body["images"], dtype=np.uint8), image[None])
    assert "model" not in json.loads(workload.classify_body(workload.images_json(image), None))


def test_multipart_png_has_the_image_field():
    body, content_type = workload.multipart_png(b"\x89PNGdata")
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/form-data; ")
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="image"; filename="digit.png"' in body and b"\x89PNGdata" in body


def test_npy_body_round_trips():
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    from serving.codec import npy_to_array

    assert np.array_equal(npy_to_array(workload.npy_body(images), 1 << 20), images)


def test_generate_body():
    import random

    body = json.loads(workload.generate_body("vae4", 4, random.Random(1)))
    assert body["model"] == "vae4" and body["format"] == "png" and len(body["z"]) == 1 and len(body["z"][0]) == 4


def catalog_models():
    sig = {"latent_dim": None}
    return [
        {"name": "lstm", "store_name": "mnist-lstm", "task": "classification", "default": True, "ready": True, "signature": sig},
        {"name": "gated-rnn", "store_name": "mnist-gated-rnn", "task": "classification", "ready": True, "signature": sig},
        {"name": "vae4", "store_name": "fashion-vae4-decoder", "task": "generation", "ready": True, "signature": {"latent_dim": 4}},
        {"name": "vae2", "store_name": "fashion-vae2-encoder", "task": "encoding", "ready": True, "signature": {"latent_dim": 2}},
        {"name": "late", "store_name": "mnist-late", "task": "classification", "ready": False, "signature": sig},
        {
            "name": "ensemble",
            "store_name": "mnist-ensemble",
            "task": "classification",
            "ready": True,
            "signature": sig,
            "members": [{"name": "lstm"}, {"name": "gated-rnn"}],
        },
    ]


def test_catalog_from_models():
    c = workload.Catalog.from_models(catalog_models())
    # The ensemble is left out of the load mix (seven models' compute per request).
    assert c.classifiers == ["gated-rnn", "lstm"] and c.classifier_store_names == ["mnist-gated-rnn", "mnist-lstm"]
    assert c.default_classifier == "lstm"
    assert c.generators == {"vae4": 4}
    assert c.manifold_model == "vae4"  # no vae2 decoder: any generator with >= 2 latent dims
    assert c.store_name("lstm") == "mnist-lstm" and c.store_name("mnist-lstm") == "mnist-lstm"
    with pytest.raises(KeyError):
        c.store_name("nope")

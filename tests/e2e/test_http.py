"""The HTTP API end to end: real BentoML server, real ONNX Runtime, models trained on real data."""

from __future__ import annotations

import io
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CLASSIFIERS = ("lstm", "stacked-lstm", "simple-rnn-cell", "lstm-cell", "dense-rnn", "gated-rnn", "custom-lstm")


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(http) -> dict[str, dict]:
    return {m["name"] + ":" + m["task"]: m for m in http.get("/v1/models").json()["models"]}


def onnx_probabilities(server, store_name: str, images: np.ndarray) -> np.ndarray:
    """The stored model.onnx run in-process, as a reference for what the server returns."""
    import onnxruntime as ort

    model_dir = server.model_dir(store_name)
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.astype(np.float32) / 255.0})[0]


def png_bytes(array: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header declares width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_client_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["error"], str) and body["error"], body
    for word in words:
        assert word.lower() in body["error"].lower(), (word, body["error"])


# ------------------------------------------------------------------ discovery


def test_models_lists_every_stored_model_with_signature_and_metrics(http, server, catalog):
    models = http.get("/v1/models").json()["models"]
    store_names = {m["store_name"] for m in models}
    assert {f"mnist-{name}" for name in CLASSIFIERS} <= store_names
    assert {"fashion-vae2-decoder", "fashion-vae4-decoder"} <= store_names
    for entry in models:
        stored = json.loads((server.model_dir(entry["store_name"]) / "signature.json").read_text())
        assert entry["signature"] == stored
        assert entry["provider"] == "CPUExecutionProvider"
        assert entry["ready"] is True
    classifiers = [m for m in models if m["task"] == "classification"]
    # The default is the best single classifier; the ensemble (seven models' compute) only when named.
    best = max((m for m in classifiers if m["name"] != "ensemble"), key=lambda m: m["metrics"]["test_accuracy"])
    assert [m["name"] for m in classifiers if m["default"]] == [best["name"]]
    assert http.get("/v1/models/vae2").json()["signature"]["latent_dim"] == 2
    assert http.get("/v1/models/mnist-lstm").json()["name"] == "lstm"
    assert_client_error(http.get("/v1/models/resnet"), 404, "resnet")


def test_openapi_documents_every_public_route(http):
    paths = http.get("/docs.json").json()["paths"]
    for route in (
        "/v1/classify",
        "/v1/classify/image",
        "/v1/classify/batch",
        "/v1/generate",
        "/v1/generate/sample",
        "/v1/generate/manifold",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/encode",
        "/v1/reconstruct",
        "/v1/generate/interpolate",
        "/v1/plots/clusters",
        "/v1/plots/confusion",
    ):
        assert route in paths, sorted(paths)
    # The routes that parse their own bodies still document every content type they take.
    assert set(paths["/v1/encode"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
        "application/octet-stream",
    }
    assert "steps" in json.dumps(paths["/v1/generate/interpolate"]["post"]["requestBody"])


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classify_matches_in_process_onnx_and_the_stored_accuracy(http, server, catalog, name):
    entry = catalog[f"{name}:classification"]
    # The stored accuracy was measured on the first test_size images of the test split: use the same ones.
    n = min(entry["training"]["test_size"], len(server.test_images))
    images, labels = server.test_images[:n], server.test_labels[:n]
    predictions = []
    for start in range(0, n, 256):
        body = http.post("/v1/classify", json={"model": name, "images": images[start : start + 256].tolist()}).json()
        assert body["model"] == name and body["version"] == entry["version"]
        predictions += body["predictions"]
    probs = np.array([p["probabilities"] for p in predictions], dtype=np.float32)
    np.testing.assert_allclose(probs, onnx_probabilities(server, f"mnist-{name}", images), atol=1e-5)
    assert [p["label"] for p in predictions] == probs.argmax(1).tolist()
    accuracy = float((probs.argmax(1) == labels).mean())
    if n == entry["training"]["test_size"]:
        assert abs(accuracy - entry["metrics"]["test_accuracy"]) <= 2 / n, (accuracy, entry["metrics"])


def test_integer_pixels_and_unit_floats_mean_the_same(http, server):
    image = server.test_images[0]
    as_ints = http.post("/v1/classify", json={"model": "lstm", "images": [image.tolist()]}).json()
    as_floats = http.post("/v1/classify", json={"model": "lstm", "images": (image / 255.0).tolist()}).json()
    np.testing.assert_allclose(as_ints["predictions"][0]["probabilities"], as_floats["predictions"][0]["probabilities"], atol=1e-6)


def test_default_model_is_the_best_stored(http, catalog, server):
    body = http.post("/v1/classify", json={"images": server.test_images[:1].tolist()}).json()
    assert catalog[f"{body['model']}:classification"]["default"] is True


def test_uploaded_images_of_any_size_and_polarity(http, server):
    raw = http.post("/v1/classify", json={"model": "lstm", "images": server.test_images[:64].tolist()}).json()
    correct = [i for i, p in enumerate(raw["predictions"]) if p["label"] == server.test_labels[i]][:6]
    assert len(correct) >= 4
    agree = total = 0
    for i in correct:
        digit = server.test_images[i]
        # As a scan or a drawing would arrive: larger, off-centre, dark ink on a light page.
        page = np.full((300, 400), 255, np.uint8)
        page[40:264, 120:344] = 255 - np.array(Image.fromarray(digit).resize((224, 224), Image.BICUBIC))
        variants = {
            "white-on-black 28": png_bytes(digit),
            "black-on-white 400x300": png_bytes(page),
            "rgb": png_bytes(page, "RGB"),
            "rgba": png_bytes(page, "RGBA"),
            "jpeg": png_bytes(page, "RGB", "JPEG"),
        }
        for kind, data in variants.items():
            response = http.post("/v1/classify/image", params={"model": "lstm"}, files={"image": (f"{kind}.png", data)})
            assert response.status_code == 200, (kind, response.text)
            total += 1
            agree += response.json()["predictions"][0]["label"] == int(server.test_labels[i])
    assert agree / total >= 0.7, (agree, total)


def test_bulk_npy_matches_json(http, server):
    images = server.test_images[:300]
    buf = io.BytesIO()
    np.save(buf, images)
    response = http.post(
        "/v1/classify/batch", params={"model": "gated-rnn"}, content=buf.getvalue(), headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-model"] == "gated-rnn"
    probs = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert probs.shape == (300, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, onnx_probabilities(server, "mnist-gated-rnn", images), atol=1e-5)
    buf = io.BytesIO()
    np.save(buf, images.astype(np.float32) / 255.0)
    floats = np.load(io.BytesIO(http.post("/v1/classify/batch", params={"model": "gated-rnn"}, content=buf.getvalue()).content))
    np.testing.assert_allclose(floats, probs, atol=1e-6)


# ------------------------------------------------------------------ generation


def test_generate_png_and_arrays_agree(http):
    z = [[1.4, -1.3], [0.0, 0.0], [-1.0, 2.0]]
    arrays = http.post("/v1/generate", json={"model": "vae2", "z": z, "format": "array"}).json()
    pixels = np.array(arrays["images"])
    assert pixels.shape == (3, 28, 28) and pixels.min() >= 0 and pixels.max() <= 1
    one = http.post("/v1/generate", json={"model": "vae2", "z": z[0]})
    assert one.headers["content-type"] == "image/png"
    png = np.array(Image.open(io.BytesIO(one.content)))
    assert png.shape == (28, 28)
    assert np.abs(png.astype(int) - np.rint(pixels[0] * 255)).max() <= 1
    grid = Image.open(io.BytesIO(http.post("/v1/generate", json={"model": "vae2", "z": z}).content))
    assert grid.size == (56, 56)  # ceil(sqrt(3)) = 2 columns, 2 rows


def test_sample_is_reproducible_by_seed(http):
    from contract.images import sample_latent

    first = http.post("/v1/generate/sample", json={"model": "vae4", "n": 5, "seed": 7, "format": "array"}).json()["images"]
    again = http.post("/v1/generate/sample", json={"model": "vae4", "n": 5, "seed": 7, "format": "array"}).json()["images"]
    other = http.post("/v1/generate/sample", json={"model": "vae4", "n": 5, "seed": 8, "format": "array"}).json()["images"]
    assert first == again and first != other
    z = sample_latent(5, 4, 7)
    same = http.post("/v1/generate", json={"model": "vae4", "z": z.tolist(), "format": "array"}).json()["images"]
    np.testing.assert_allclose(first, same, atol=1e-6)
    grid = Image.open(io.BytesIO(http.post("/v1/generate/sample", json={"model": "vae2", "n": 16, "seed": 1}).content))
    assert grid.size == (112, 112)


def test_manifolds_are_cached_by_model_version_and_grid(http):
    default = http.get("/v1/generate/manifold", params={"model": "vae2"})
    assert default.headers["x-cache"] == "hit"  # rendered at start-up, before /readyz turned 200
    params = {"model": "vae4", "n": 7, "scale": 1.5, "dims": "1,2", "fixed": "0.5,0,0,-1"}
    first, again = http.get("/v1/generate/manifold", params=params), http.get("/v1/generate/manifold", params=params)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert first.content == again.content
    other = http.get("/v1/generate/manifold", params={**params, "fixed": "0.5,0,0,1"})
    assert other.headers["x-cache"] == "miss" and other.content != first.content


def test_manifold_is_one_png(http):
    response = http.get("/v1/generate/manifold", params={"model": "vae2", "n": 30, "scale": 2.0})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (840, 840)
    vae4 = http.get("/v1/generate/manifold", params={"model": "vae4", "n": 10, "dims": "2,3", "fixed": "1,0,0,0"})
    assert vae4.status_code == 200, vae4.text
    assert Image.open(io.BytesIO(vae4.content)).size == (280, 280)


# ------------------------------------------------------------------ batching


def _histogram(server, name: str) -> tuple[float, float]:
    return server.metric(f"{name}_sum"), server.metric(f"{name}_count")


def test_concurrent_requests_share_batches(http, server):
    """Requests that arrive while their model computes are merged into its next call (batches < requests).

    A decoder call on 16 latent rows takes milliseconds, far longer than handling the next request's
    HTTP, so 32 clients keep each worker's decoder busy and its queue non-empty.
    """
    labels = {"model": "fashion-vae4-decoder"}
    before = server.metric("model_batch_size_count", **labels), server.metric("model_batch_size_sum", **labels)
    z = np.random.default_rng(0).standard_normal((96, 16, 4)).round(4)

    def one(i: int) -> list:
        with httpx.Client(base_url=server.http_url, timeout=60) as client:
            response = client.post("/v1/generate", json={"model": "vae4", "z": z[i].tolist(), "format": "array"})
        assert response.status_code == 200, response.text
        return response.json()["images"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(len(z))))
    assert all(np.asarray(r).shape == (16, 28, 28) for r in results)
    batches = server.metric("model_batch_size_count", **labels) - before[0]
    rows = server.metric("model_batch_size_sum", **labels) - before[1]
    assert rows == 96 * 16
    print(f"{len(z)} requests ran as {batches:.0f} batches")
    assert batches < len(z), f"{len(z)} requests ran as {batches:.0f} batches: none was merged"
    # Each request got its own rows back, not a batch-mate's.
    np.testing.assert_allclose(np.asarray(results[5]), np.asarray(one(5)), atol=1e-5)


def test_no_internal_route_on_the_public_port(http):
    """Every public route validates its input; there is no unvalidated batch route to reach."""
    response = http.post("/internal/predict", json={"items": [{"model": "mnist-lstm", "data": "AAAA"}]})
    assert response.status_code == 404


# ------------------------------------------------------------------ bad input


RANDOM_PIXELS = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
NAN_BODY = '{"model": "lstm", "images": [[' + ",".join(["[" + ",".join(["NaN"] + ["0.5"] * 27) + "]"] * 28) + "]]}"


@pytest.mark.parametrize(
    "method,path,kwargs,status,words",
    [
        ("post", "/v1/classify", {"json": {"images": [[[0.5] * 27] * 28]}}, 400, ["28 x 28"]),
        ("post", "/v1/classify", {"json": {"images": [[[0.5] * 28] * 28], "model": "resnet"}}, 404, ["resnet"]),
        ("post", "/v1/classify", {"json": {"images": [[[1.5] * 28] * 28]}}, 400, ["within"]),
        ("post", "/v1/classify", {"json": {"images": [[[300] * 28] * 28]}}, 400, ["255"]),
        ("post", "/v1/classify", {"json": {"images": [[["a"] * 28] * 28]}}, 400, []),
        ("post", "/v1/classify", {"json": {"images": [[[0.5] * 28] * 28] * 300}}, 413, ["256"]),
        ("post", "/v1/classify", {"json": {"pictures": []}}, 400, ["images"]),
        ("post", "/v1/classify", {"content": NAN_BODY, "headers": {"content-type": "application/json"}}, 400, ["finite"]),
        ("post", "/v1/classify", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, []),
        ("post", "/v1/classify/image", {"files": {"image": ("x.png", b"this is not an image")}}, 400, ["image"]),
        # truncated inside its pixel data (an all-zero image compresses into the first 60 bytes and would be whole)
        ("post", "/v1/classify/image", {"files": {"image": ("x.png", png_bytes(RANDOM_PIXELS)[:200])}}, 400, ["truncated"]),
        ("post", "/v1/classify/image", {"files": {"image": ("bomb.png", png_bomb())}}, 413, ["pixels"]),
        ("post", "/v1/classify/image", {"data": {"nothing": "here"}}, 415, ["multipart/form-data"]),
        ("post", "/v1/classify/image", {"files": {"picture": ("x.png", b"...")}}, 400, ["image"]),
        ("post", "/v1/classify/batch", {"content": b"\x93NUMPY garbage"}, 400, []),
        ("post", "/v1/generate", {"json": {"model": "vae2", "z": [[1.0, 2.0, 3.0]]}}, 400, ["z"]),
        (
            "post",
            "/v1/generate",
            {"content": '{"model": "vae2", "z": [[1e400, 0.0]]}', "headers": {"content-type": "application/json"}},
            400,
            ["finite"],
        ),
        ("post", "/v1/generate", {"json": {"model": "lstm", "z": [[1.0, 2.0]]}}, 400, ["lstm", "not a decoder"]),
        ("post", "/v1/generate", {"json": {"model": "vae2", "z": [[1.0, 2.0]], "format": "gif"}}, 400, ["format"]),
        ("post", "/v1/generate/sample", {"json": {"model": "vae2", "n": 100000, "seed": 1}}, 413, ["n"]),
        ("post", "/v1/generate/sample", {"json": {"model": "vae2", "n": 0, "seed": 1}}, 400, ["n"]),
        ("get", "/v1/generate/manifold", {"params": {"model": "vae2", "n": 1000}}, 413, ["n"]),
        ("get", "/v1/generate/manifold", {"params": {"model": "vae2", "dims": "0,0"}}, 400, ["dims"]),
        ("get", "/v1/generate/manifold", {"params": {"model": "vae4", "fixed": "1,0"}}, 400, ["fixed"]),
        ("get", "/v1/generate/manifold", {"params": {"model": "vae2", "scale": "nan"}}, 400, ["scale"]),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(http, server, method, path, kwargs, status, words):
    response = getattr(http, method)(path, **kwargs)
    assert_client_error(response, status, *words)
    assert http.get("/readyz").status_code == 200
    ok = http.post("/v1/classify", json={"model": "lstm", "images": server.test_images[:1].tolist()})
    assert ok.status_code == 200


def test_pickled_npy_is_refused(http):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_client_error(http.post("/v1/classify/batch", content=buf.getvalue()), 400, "pickle")


def test_body_over_the_size_limit_is_refused(http, server):
    from serving.settings import Settings

    limit = Settings.from_env({}).max_body_bytes
    response = http.post("/v1/classify/batch", content=b"\0" * (limit + 1))
    assert_client_error(response, 413, "limit")
    assert http.get("/readyz").status_code == 200


def test_liveness_and_metrics(http):
    assert http.get("/livez").status_code == 200
    text = http.get("/metrics").text
    assert "model_inference_seconds" in text and "model_batch_size" in text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/v1/classify", "POST"), ("GET", "/v2/models/mnist-lstm/infer", "POST"), ("POST", "/livez", "GET")],
)
def test_405_carries_allow(server, method: str, path: str, allowed: str) -> None:
    """A method a route does not take: 405 in the API's error shape, with Allow naming what it takes (RFC 9110)."""
    response = httpx.request(method, f"{server.http_url}{path}", timeout=30)
    assert response.status_code == 405
    assert allowed in [m.strip() for m in response.headers.get("allow", "").split(",")], response.headers
    assert "does not take" in response.json()["error"]

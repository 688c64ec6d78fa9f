"""/v1/encode, /v1/reconstruct and /v1/generate/interpolate end to end, checked against the stored ONNX models."""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
from PIL import Image, ImageSequence

from tests.e2e.conftest import REPO
from tests.e2e.test_http import assert_client_error, png_bytes

pytestmark = pytest.mark.slow

LATENT = {"vae2": 2, "vae4": 4}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def clothes() -> np.ndarray:
    from training.data import load

    return load("fashion-mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets")).x_test[:6]


def onnx_run(server, store_name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(server.model_dir(store_name) / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def picture(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# ------------------------------------------------------------------ encode


@pytest.mark.parametrize("model", ["vae2", "vae4"])
def test_encode_json_upload_and_npy_agree_with_the_stored_encoder(http, server, clothes, model):
    body = http.post("/v1/encode", json={"model": model, "images": clothes.tolist()}).json()
    assert body["model"] == model and body["version"]
    z_mean, z_log_var = np.array(body["z_mean"]), np.array(body["z_log_var"])
    assert z_mean.shape == z_log_var.shape == (len(clothes), LATENT[model])
    reference = onnx_run(server, f"fashion-{model}-encoder", clothes[..., None].astype(np.float32) / 255.0)
    np.testing.assert_allclose(z_mean, reference["z_mean"], atol=1e-5)
    np.testing.assert_allclose(z_log_var, reference["z_log_var"], atol=1e-5)

    again = http.post("/v1/encode", json={"model": model, "images": clothes.tolist()}).json()
    assert again["z_mean"] == body["z_mean"]  # deterministic: z_mean, never a sample

    bulk = http.post(f"/v1/encode?model={model}", content=npy(clothes), headers={"content-type": "application/octet-stream"})
    np.testing.assert_allclose(bulk.json()["z_mean"], z_mean, atol=1e-5)
    # A 28 x 28 Fashion-MNIST PNG is read as it is.
    upload = http.post("/v1/encode", params={"model": model}, files={"image": ("shirt.png", png_bytes(clothes[2]), "image/png")})
    np.testing.assert_allclose(upload.json()["z_mean"], z_mean[2:3], atol=1e-5)


def test_encode_one_image_and_the_default_model(http, clothes):
    body = http.post("/v1/encode", json={"images": clothes[0].tolist()}).json()
    assert body["model"] == "vae2" and np.array(body["z_mean"]).shape == (1, 2)


# ------------------------------------------------------------------ reconstruct


def test_reconstruct_png_puts_each_input_beside_its_reconstruction(http, server, clothes):
    response = http.post("/v1/reconstruct", json={"model": "vae4", "images": clothes[:3].tolist()})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    img = np.asarray(picture(response.content))
    assert img.shape == (3 * 28, 2 * 28)
    np.testing.assert_array_equal(img[:, :28].reshape(3, 28, 28), clothes[:3])  # inputs on the left

    arrays = http.post("/v1/reconstruct", json={"model": "vae4", "images": clothes[:3].tolist(), "format": "array"}).json()
    decoded = np.array(arrays["images"])
    assert decoded.shape == (3, 28, 28)
    np.testing.assert_allclose(arrays["loss"], np.add(arrays["reconstruction_loss"], arrays["kl"]), rtol=1e-5)
    assert np.abs(img[:, 28:].reshape(3, 28, 28) - np.rint(decoded * 255)).max() <= 1
    # The decoder of the encoder's z_mean, as the stored models compute it.
    z_mean = onnx_run(server, "fashion-vae4-encoder", clothes[:3, ..., None].astype(np.float32) / 255.0)["z_mean"]
    reference = onnx_run(server, "fashion-vae4-decoder", z_mean)["images"][..., 0]
    np.testing.assert_allclose(decoded, reference, atol=1e-5)

    # The loss: binary cross-entropy summed over the 784 pixels (Keras clips predictions to 1e-7).
    x = clothes[:3].reshape(3, -1) / 255.0
    p = np.clip(reference.reshape(3, -1).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(arrays["reconstruction_loss"], bce, rtol=1e-4)
    header = [float(v) for v in response.headers["x-reconstruction-loss"].split(",")]
    np.testing.assert_allclose(header, arrays["reconstruction_loss"], atol=1e-3)
    assert len(arrays["kl"]) == 3 and min(arrays["kl"]) >= 0


def test_reconstruct_from_an_upload_and_from_npy(http, clothes):
    png = http.post("/v1/reconstruct?format=array", files={"image": ("x.png", png_bytes(clothes[1]), "image/png")}).json()
    npy_body = http.post(
        "/v1/reconstruct?format=array&model=vae2", content=npy(clothes[1:2]), headers={"content-type": "application/octet-stream"}
    ).json()
    assert png["model"] == npy_body["model"] == "vae2"
    np.testing.assert_allclose(png["images"], npy_body["images"], atol=1e-6)


# ------------------------------------------------------------------ interpolate


def test_interpolate_between_latent_points_png_gif_and_arrays(http):
    request = {"model": "vae2", "z": [[-2.0, 1.0], [2.0, -1.0]], "steps": 7}
    arrays = http.post("/v1/generate/interpolate", json={**request, "format": "array"}).json()
    z, frames = np.array(arrays["z"]), np.array(arrays["images"])
    assert z.shape == (7, 2) and frames.shape == (7, 28, 28)
    np.testing.assert_allclose(z, np.linspace([-2.0, 1.0], [2.0, -1.0], 7), atol=1e-6)  # both ends, a straight line
    direct = http.post("/v1/generate", json={"model": "vae2", "z": z.tolist(), "format": "array"}).json()["images"]
    np.testing.assert_allclose(frames, direct, atol=1e-5)

    strip = http.post("/v1/generate/interpolate", json=request)
    assert strip.headers["content-type"] == "image/png" and strip.headers["x-model"] == "vae2"
    pixels = np.asarray(picture(strip.content))
    assert pixels.shape == (28, 7 * 28)
    assert np.abs(pixels.reshape(28, 7, 28).transpose(1, 0, 2) - np.rint(frames * 255)).max() <= 1
    assert http.post("/v1/generate/interpolate", json=request).content == strip.content  # deterministic

    gif = picture(http.post("/v1/generate/interpolate", json={**request, "format": "gif"}).content)
    assert gif.format == "GIF" and gif.n_frames == 7 and gif.size == (28, 28) and gif.info["loop"] == 0
    first = np.asarray(next(iter(ImageSequence.Iterator(gif))).convert("L"))
    assert np.abs(first.astype(int) - np.rint(frames[0] * 255)).max() <= 1


def test_interpolate_between_two_images_runs_between_their_z_mean(http, clothes):
    ends = clothes[[0, 3]]
    z_mean = http.post("/v1/encode", json={"model": "vae4", "images": ends.tolist()}).json()["z_mean"]
    body = http.post("/v1/generate/interpolate", json={"model": "vae4", "images": ends.tolist(), "steps": 5, "format": "array"}).json()
    z = np.array(body["z"])
    assert z.shape == (5, 4)
    np.testing.assert_allclose(z[[0, -1]], z_mean, atol=1e-5)


# ------------------------------------------------------------------ bad input


FASHION = [[[0] * 28] * 28]


@pytest.mark.parametrize(
    "path,kwargs,status,words",
    [
        ("/v1/encode", {"json": {"model": "lstm", "images": FASHION}}, 400, ["lstm", "not an encoder"]),
        ("/v1/encode", {"json": {"model": "ensemble", "images": FASHION}}, 400, ["not an encoder"]),
        ("/v1/encode", {"json": {"model": "resnet", "images": FASHION}}, 404, ["resnet"]),
        ("/v1/encode", {"json": {"images": [[[0] * 27] * 28]}}, 400, ["28 x 28"]),
        ("/v1/encode", {"json": {"images": [[[2.0] * 28] * 28]}}, 400, ["[0, 1]"]),
        ("/v1/encode", {"json": {"images": [[[0] * 28] * 28] * 300}}, 413, ["256"]),
        ("/v1/encode", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 400, ["not valid JSON"]),
        ("/v1/encode", {"content": b"\x89PNG", "headers": {"content-type": "image/png"}}, 415, ["image/png", "multipart/form-data"]),
        ("/v1/encode", {"files": {"picture": ("x.png", b"...")}}, 400, ["image"]),
        ("/v1/encode", {"data": {"nothing": "here"}}, 400, ["not valid JSON"]),
        ("/v1/encode", {"files": {"image": ("x.png", b"not an image")}}, 400, ["image"]),
        ("/v1/encode", {"content": b"\x93NUMPY garbage", "headers": {"content-type": "application/octet-stream"}}, 400, [".npy"]),
        ("/v1/reconstruct", {"json": {"model": "gated-rnn", "images": FASHION}}, 400, ["not an encoder"]),
        ("/v1/reconstruct", {"json": {"images": FASHION, "format": "gif"}}, 400, ["format"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "z": [[0, 0, 0], [1, 1, 1]]}}, 400, ["z", "2"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae4", "z": [[0, 0], [1, 1]]}}, 400, ["z", "4"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "z": [[0, 0], [1, 1], [2, 2]]}}, 400, ["two"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "z": [[0, 0], [1, 1]], "steps": 1}}, 400, ["steps"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "z": [[0, 0], [1, 1]], "steps": 101}}, 400, ["steps"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2"}}, 400, ["exactly one"]),
        ("/v1/generate/interpolate", {"json": {"model": "lstm", "images": FASHION * 2}}, 400, ["not an encoder"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "images": FASHION}}, 400, ["two"]),
        ("/v1/generate/interpolate", {"json": {"model": "vae2", "z": [[0, 0], [1, 1]], "format": "bmp"}}, 400, ["format"]),
    ],
)
def test_bad_input_gets_the_one_error_shape(http, path, kwargs, status, words):
    response = http.post(path, **kwargs)
    assert_client_error(response, status, *words)
    assert set(response.json()) == {"error", "type"}

"""The client library and CLI against the real server, over HTTP and gRPC."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clients import (
    GRPCClient,
    HTTPClient,
    InvalidRequestError,
    NotFoundError,
    NotOfferedError,
    UnavailableError,
)
from contract.images import decode_image, latent_grid, mnist_preprocess, tile, to_png

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5
TASKS = ("classification", "generation", "encoding")
# What the test store holds (the clients themselves learn it from the server).
CLASSIFIERS = ("lstm", "stacked-lstm", "simple-rnn-cell", "lstm-cell", "dense-rnn", "gated-rnn", "custom-lstm", "ensemble")
GENERATORS = ("vae2", "vae4")


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[HTTPClient]:
    with HTTPClient(server.http_url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def grpc(server: Any) -> Iterator[GRPCClient]:
    with GRPCClient(server.grpc_target, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(http: HTTPClient) -> dict[str, dict[str, Any]]:
    """HTTP's model descriptions of classifiers and decoders, by store name."""
    return {m["store_name"]: m for m in http.models() if m["task"] in TASKS}


def latent_dim(catalog: dict[str, dict[str, Any]], model: str) -> int:
    return int(catalog[f"fashion-{model}-decoder"]["signature"]["latent_dim"])


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"), dtype=np.int16)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(path)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_predictions(a: list, b: list) -> None:
    assert len(a) == len(b)
    assert [p.label for p in a] == [p.label for p in b]
    np.testing.assert_allclose(np.stack([p.probabilities for p in a]), np.stack([p.probabilities for p in b]), atol=ATOL)


# -- library: discovery and health ---------------------------------------------------------


def test_both_transports_are_live_and_ready(http: HTTPClient, grpc: GRPCClient) -> None:
    assert http.health() == {"live": True, "ready": True}
    assert grpc.health() == {"live": True, "ready": True}


def test_models_are_listed_alike_on_both_transports(http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]) -> None:
    by_task = {task: {m["name"] for m in catalog.values() if m["task"] == task} for task in TASKS}
    assert by_task == {"classification": set(CLASSIFIERS), "generation": set(GENERATORS), "encoding": set(GENERATORS)}
    assert sum(1 for m in catalog.values() if m["task"] == "classification" and m["default"]) == 1

    over_grpc = {m["store_name"]: m for m in grpc.models()}
    assert set(over_grpc) == set(catalog)
    for store, entry in over_grpc.items():
        described = catalog[store]
        assert (entry["name"], entry["task"], entry["default"]) == (described["name"], described["task"], described["default"])
        assert entry["version_number"] == described["version_number"]
        for kind in ("inputs", "outputs"):
            got = [(t["name"], t["dtype"], t["shape"]) for t in entry["signature"][kind]]
            want = sorted((t["name"], t["dtype"], list(t["shape"])) for t in described["signature"][kind])
            assert got == want, (store, kind)


# -- library: classification ---------------------------------------------------------------


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classify_agrees_across_transports(
    model: str, server: Any, http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]
) -> None:
    images = server.test_images[:32]
    over_http = http.classify(images, model=model)
    over_grpc = grpc.classify(images, model=model)
    assert_same_predictions(over_http, over_grpc)
    described = catalog[f"mnist-{model}"]
    # Both name the version by its number (HTTP's answer names the store tag; the client looks up its number).
    assert (
        {(p.model, p.version) for p in over_http}
        == {(p.model, p.version) for p in over_grpc}
        == {(model, str(described["version_number"]))}
    )
    probs = np.stack([p.probabilities for p in over_http])
    assert probs.shape == (32, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert [p.label for p in over_http] == probs.argmax(axis=1).tolist()


def test_default_classifiers(server: Any, http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]) -> None:
    [default] = [m["name"] for m in catalog.values() if m["task"] == "classification" and m["default"]]
    images = server.test_images[:4]
    assert {p.model for p in http.classify(images)} == {default}
    # Both transports ask the server for its default (gRPC through the v2 model configs on the same port).
    assert {p.model for p in grpc.classify(images)} == {default}
    assert {m["name"] for m in grpc.models() if m["default"]} == {default, "vae2"}
    assert_same_predictions(http.classify(images, model=default), grpc.classify(images))


def test_every_input_form_gives_the_same_probabilities(server: Any, http: HTTPClient, grpc: GRPCClient) -> None:
    images = server.test_images[:20]
    floats = images.astype(np.float32) / np.float32(255)
    reference = np.stack([p.probabilities for p in http.classify(images, model="lstm")])
    candidates = {
        "http floats": np.stack([p.probabilities for p in http.classify(floats, model="lstm")]),
        "http nested lists": np.stack([p.probabilities for p in http.classify(images.tolist(), model="lstm")]),
        "http bulk uint8": http.classify_bulk(images, model="lstm"),
        "http bulk float32": http.classify_bulk(floats, model="lstm"),
        "grpc bulk uint8": grpc.classify_bulk(images, model="lstm"),
        "grpc floats": np.stack([p.probabilities for p in grpc.classify(floats, model="lstm")]),
    }
    for name, probs in candidates.items():
        assert probs.shape == (20, 10), name
        np.testing.assert_allclose(probs, reference, atol=ATOL, err_msg=name)
    [single] = http.classify(images[3], model="lstm")
    np.testing.assert_allclose(single.probabilities, reference[3], atol=ATOL)


def test_large_inputs_are_split_into_accepted_requests(server: Any, http: HTTPClient, grpc: GRPCClient) -> None:
    # 300 rows exceed the server's default 256 rows per JSON request / Predict call.
    images = server.test_images[:300]
    bulk = http.classify_bulk(images, model="lstm")
    over_http = http.classify(images, model="lstm")
    over_grpc = grpc.classify(images, model="lstm")
    assert len(over_http) == len(over_grpc) == 300
    assert_same_predictions(over_http, over_grpc)
    np.testing.assert_allclose(np.stack([p.probabilities for p in over_http]), bulk, atol=ATOL)
    with GRPCClient(server.grpc_target, max_batch_rows=7) as small:
        np.testing.assert_allclose(small.classify_bulk(images[:30], model="lstm"), bulk[:30], atol=ATOL)


def test_classify_image_agrees_across_transports_and_with_local_preprocessing(
    server: Any, http: HTTPClient, grpc: GRPCClient, tmp_path: Path
) -> None:
    for i in range(6):
        path = write_png(tmp_path / f"digit{i}.png", server.test_images[i])
        over_http = http.classify_image(path, model="gated-rnn")
        over_grpc = grpc.classify_image(path.read_bytes(), model="gated-rnn")
        assert_same_predictions([over_http], [over_grpc])
        # The server preprocesses uploads with the same helper the gRPC client runs locally.
        local = mnist_preprocess(decode_image(path.read_bytes(), 1 << 20))
        assert_same_predictions([over_http], http.classify(local, model="gated-rnn"))

    # A big dark-on-light JPEG goes through the same path on both sides.
    big = Image.fromarray(255 - server.test_images[7]).resize((280, 280), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    assert_same_predictions([http.classify_image(buf.getvalue(), model="lstm")], [grpc.classify_image(buf.getvalue(), model="lstm")])


# -- library: generation -------------------------------------------------------------------


@pytest.mark.parametrize("model", GENERATORS)
def test_generate_agrees_across_transports(model: str, http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]) -> None:
    z = np.random.default_rng(5).standard_normal((5, latent_dim(catalog, model))).astype(np.float32)
    over_http = http.generate(z, model=model)
    over_grpc = grpc.generate(z, model=model)
    assert over_http.shape == over_grpc.shape == (5, 28, 28)
    assert over_http.dtype == over_grpc.dtype == np.float32
    assert over_http.min() >= 0.0 and over_http.max() <= 1.0
    np.testing.assert_allclose(over_http, over_grpc, atol=ATOL)
    np.testing.assert_allclose(http.generate(z[2], model=model)[0], over_http[2], atol=ATOL)


def test_sample_is_reproducible_and_agrees_across_transports(
    http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]
) -> None:
    over_http = http.sample(16, seed=1)
    over_grpc = grpc.sample(16, seed=1)
    assert over_http.shape == over_grpc.shape == (16, 28, 28)
    np.testing.assert_allclose(over_http, over_grpc, atol=ATOL)
    z = np.random.default_rng(1).standard_normal((16, latent_dim(catalog, "vae2")), dtype=np.float32)
    np.testing.assert_allclose(http.generate(z), over_http, atol=ATOL)
    assert not np.allclose(http.sample(16, seed=2), over_http, atol=1e-6)
    np.testing.assert_allclose(grpc.sample(3, seed=4, model="vae4"), http.sample(3, seed=4, model="vae4"), atol=ATOL)


def test_manifold_agrees_across_transports(http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]) -> None:
    over_http = png_pixels(http.manifold(n=5, scale=1.5))
    over_grpc = png_pixels(grpc.manifold(n=5, scale=1.5))
    assert over_http.shape == over_grpc.shape == (5 * 28, 5 * 28)
    # Same floats to 1e-5 can still round to neighbouring 8-bit levels.
    assert np.abs(over_http - over_grpc).max() <= 1

    options = {"model": "vae4", "n": 4, "scale": 2.0, "dims": (2, 3), "fixed": [0.5, -0.5, 0.0, 0.0]}
    over_http = png_pixels(http.manifold(**options))
    over_grpc = png_pixels(grpc.manifold(**options))
    z = latent_grid(4, 2.0, latent_dim(catalog, "vae4"), (2, 3), options["fixed"])
    expected = png_pixels(to_png(tile(http.generate(z, model="vae4"), ncols=4)))
    assert over_http.shape == (112, 112)
    assert np.abs(over_http - over_grpc).max() <= 1
    assert np.abs(over_http - expected).max() <= 1


# -- library: errors -----------------------------------------------------------------------


def test_bad_requests_raise_the_same_exceptions_on_both_transports(
    server: Any, http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]
) -> None:
    wrong_shape = np.zeros((2, 27, 28), dtype=np.float32)
    for client in (http, grpc):
        with pytest.raises(InvalidRequestError, match="28") as info:
            client.classify(wrong_shape, model="lstm")
        assert (info.value.status, info.value.code) in ((400, None), (None, "INVALID_ARGUMENT"))
        with pytest.raises(InvalidRequestError):
            client.classify(np.full((1, 28, 28), 2.0, dtype=np.float32), model="lstm")
        with pytest.raises(InvalidRequestError):
            client.generate(np.zeros((1, latent_dim(catalog, "vae2") + 1)), model="vae2")
        with pytest.raises(InvalidRequestError):
            client.classify_image(b"this is not an image")

    with pytest.raises(NotFoundError) as info:
        http.classify(server.test_images[:1], model="no-such-model")
    assert info.value.status == 404 and "no-such-model" in info.value.message
    # A store name passes through the gRPC client, so this NOT_FOUND comes from the server.
    with pytest.raises(NotFoundError) as info:
        grpc.classify(server.test_images[:1], model="mnist-no-such-model")
    assert info.value.code == "NOT_FOUND" and "mnist-no-such-model" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        http.sample(100_000, seed=0)
    assert info.value.status == 413


# What the server answers for the same mistake over every protocol (the settings' defaults).
SAME_MISTAKES = [
    ("sample", {"n": 1000, "seed": 0}, "at most 256 latent points per request for model fashion-vae2-decoder, got 1000"),
    ("sample", {"n": 100_000, "seed": 0, "model": "vae4"}, None),
    ("sample", {"n": 0, "seed": 0}, None),
    ("sample", {"n": -3, "seed": 0}, None),
    ("manifold", {"n": 100}, "n must be at most 40, got 100"),
    ("manifold", {"n": 41, "model": "vae4"}, "n must be at most 40, got 41"),
    ("manifold", {"n": 0}, None),
    ("manifold", {"n": 5, "scale": 1000.0}, None),
    ("manifold", {"n": 5, "scale": 0.0}, None),
    ("manifold", {"n": 5, "dims": (0, 5)}, None),
    ("manifold", {"n": 5, "dims": (0, 0.5)}, None),
    ("manifold", {"n": 5, "model": "vae4", "fixed": [0.0, 1.0]}, None),
    ("manifold", {"n": 5, "fixed": [0.0, float("nan")]}, None),
]


@pytest.mark.parametrize("method, options, message", SAME_MISTAKES, ids=[f"{m}-{o}" for m, o, _ in SAME_MISTAKES])
def test_the_same_mistake_fails_alike_on_both_transports(
    http: HTTPClient, grpc: GRPCClient, method: str, options: dict[str, Any], message: str | None
) -> None:
    with pytest.raises(InvalidRequestError) as over_http:
        getattr(http, method)(**options)
    with pytest.raises(InvalidRequestError) as over_grpc:
        getattr(grpc, method)(**options)
    assert type(over_http.value) is type(over_grpc.value) is InvalidRequestError
    assert over_grpc.value.message == over_http.value.message
    if message is not None:
        assert over_http.value.message == message
        assert (over_http.value.status, over_grpc.value.code) == (413, "RESOURCE_EXHAUSTED" if method == "sample" else None)


def test_grpc_keeps_the_limits_the_model_config_reports(grpc: GRPCClient) -> None:
    # The biggest manifold and sample HTTP accepts are accepted over gRPC too, within the row limit per call.
    with Image.open(io.BytesIO(grpc.manifold(n=40))) as img:
        assert img.size == (40 * 28, 40 * 28)
    assert grpc.sample(256, seed=3).shape == (256, 28, 28)


def test_unreachable_servers_raise_unavailable_after_retries() -> None:
    port = closed_port()
    with HTTPClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as client:
        assert client.health() == {"live": False, "ready": False}
        with pytest.raises(UnavailableError, match="cannot reach"):
            client.models()
    with GRPCClient(f"127.0.0.1:{port}", retries=2, backoff=0.01) as client:
        assert client.health() == {"live": False, "ready": False}
        with pytest.raises(UnavailableError) as info:
            client.classify(np.zeros((1, 28, 28), np.uint8))
        assert info.value.code == "UNAVAILABLE"


# -- library: the VAE routes, members, plots ---------------------------------------------------


@pytest.fixture(scope="module")
def garments() -> np.ndarray:
    """Fashion-MNIST test images (uint8 N x 28 x 28)."""
    from training.data import load

    return load("fashion-mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets")).x_test[:40]


def version_number(catalog: dict[str, dict[str, Any]], store: str) -> str:
    return str(catalog[store]["version_number"])


def test_classify_batch_names_the_model_and_version_on_both_transports(
    server: Any, http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]]
) -> None:
    images = server.test_images[:12]
    over_http, over_grpc = http.classify_batch(images, model="gated-rnn"), grpc.classify_batch(images, model="gated-rnn")
    expected = ("gated-rnn", version_number(catalog, "mnist-gated-rnn"))
    assert (over_http.model, over_http.version) == (over_grpc.model, over_grpc.version) == expected
    assert over_http.members is over_grpc.members is None
    np.testing.assert_allclose(over_http.probabilities, over_grpc.probabilities, atol=ATOL)
    assert over_http.labels.tolist() == over_grpc.labels.tolist()


def test_ensemble_members_over_http_are_each_members_answer(server: Any, http: HTTPClient, catalog: dict[str, dict[str, Any]]) -> None:
    images = server.test_images[:6]
    members = [m["name"] for m in catalog["mnist-ensemble"]["members"]]
    own = {name: http.classify_bulk(images, model=name) for name in members}
    batch = http.classify_batch(images, model="ensemble", members=True)
    assert batch.members is not None and list(batch.members) == members
    for name in members:
        np.testing.assert_allclose(batch.members[name], own[name], atol=ATOL, err_msg=name)
    from contract.calibration import combine

    temperatures = [catalog[f"mnist-{n}"]["signature"].get("calibration", {}).get("temperature", 1.0) for n in members]
    np.testing.assert_allclose(batch.probabilities, combine([own[n] for n in members], temperatures), atol=ATOL)
    predictions = http.classify(images, model="ensemble", members=True)
    for i, prediction in enumerate(predictions):
        assert prediction.members is not None and list(prediction.members) == members
        np.testing.assert_allclose(np.stack([prediction.members[n] for n in members]), np.stack([own[n][i] for n in members]), atol=ATOL)
    upload = http.classify_image(io.BytesIO(to_png(images[0])).getvalue(), model="ensemble", members=True)
    assert upload.members is not None and set(upload.members) == set(members)
    assert http.classify(images[:1], model="ensemble")[0].members is None


def test_grpc_says_members_and_plots_are_not_offered(server: Any, grpc: GRPCClient) -> None:
    for call in (
        lambda: grpc.classify(server.test_images[:1], model="ensemble", members=True),
        lambda: grpc.classify_batch(server.test_images[:1], model="ensemble", members=True),
        lambda: grpc.plot_clusters(),
        lambda: grpc.plot_confusion(),
        lambda: grpc.manifold(n=3, axes=True),
    ):
        with pytest.raises(NotOfferedError, match=r"is not offered over gRPC .*; use HTTP"):
            call()


def test_encode_agrees_across_transports_and_input_forms(
    http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]], garments: np.ndarray, tmp_path: Path
) -> None:
    for model in GENERATORS:
        over_http, over_grpc = http.encode(garments[:10], model=model), grpc.encode(garments[:10], model=model)
        expected = (model, version_number(catalog, f"fashion-{model}-encoder"))
        assert (over_http.model, over_http.version) == (over_grpc.model, over_grpc.version) == expected
        latent = latent_dim(catalog, model)
        assert over_http.z_mean.shape == over_http.z_log_var.shape == (10, latent) and over_http.z_mean.dtype == np.float32
        np.testing.assert_allclose(over_grpc.z_mean, over_http.z_mean, atol=ATOL)
        np.testing.assert_allclose(over_grpc.z_log_var, over_http.z_log_var, atol=ATOL)
    reference = http.encode(garments[:3])
    assert reference.model == "vae2"  # the default decoder's VAE
    floats = garments[:3].astype(np.float32) / np.float32(255)
    np.testing.assert_allclose(grpc.encode(floats).z_mean, reference.z_mean, atol=ATOL)
    # A picture file: preprocessed by the server (HTTP upload) or by the client as the server does (gRPC).
    path = write_png(tmp_path / "shirt.png", 255 - garments[0])  # dark on light: the preprocessing inverts it
    by_http, by_grpc = http.encode(path), grpc.encode(path.read_bytes())
    assert by_http.z_mean.shape == (1, 2)
    np.testing.assert_allclose(by_grpc.z_mean, by_http.z_mean, atol=ATOL)
    # Split like classify: more rows than one request takes.
    with HTTPClient(http.url, max_batch_rows=7) as small:
        np.testing.assert_allclose(
            small.encode(garments[:10], model="vae4").z_mean, grpc.encode(garments[:10], model="vae4").z_mean, atol=ATOL
        )


def test_reconstruct_agrees_across_transports(
    http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]], garments: np.ndarray
) -> None:
    for model in GENERATORS:
        over_http, over_grpc = http.reconstruct(garments[:8], model=model), grpc.reconstruct(garments[:8], model=model)
        expected = (model, version_number(catalog, f"fashion-{model}-decoder"))
        assert (over_http.model, over_http.version) == (over_grpc.model, over_grpc.version) == expected
        assert over_http.images.shape == (8, 28, 28) and over_http.loss.shape == (8,)
        for field in ("loss", "reconstruction_loss", "kl", "z_mean", "images"):
            np.testing.assert_allclose(getattr(over_grpc, field), getattr(over_http, field), rtol=1e-5, atol=1e-4, err_msg=field)
        np.testing.assert_allclose(over_http.loss, over_http.reconstruction_loss + over_http.kl, rtol=1e-9)
        # The reconstruction is the decoder's image of z_mean.
        np.testing.assert_allclose(http.generate(over_http.z_mean, model=model), over_http.images, atol=ATOL)
    pair_http, pair_grpc = png_pixels(http.reconstruct_png(garments[:3])), png_pixels(grpc.reconstruct_png(garments[:3]))
    assert pair_http.shape == pair_grpc.shape == (3 * 28, 56)
    assert np.abs(pair_http - pair_grpc).max() <= 1
    assert np.abs(pair_http[:, :28] - garments[:3].reshape(-1, 28)).max() <= 1  # the inputs, left


def test_interpolate_agrees_across_transports_in_every_format(
    http: HTTPClient, grpc: GRPCClient, catalog: dict[str, dict[str, Any]], garments: np.ndarray
) -> None:
    z = [[-2.0, 1.5, 0.0, 0.5], [2.0, -1.5, 1.0, 0.0]]
    over_http, over_grpc = http.interpolate(z=z, steps=7, model="vae4"), grpc.interpolate(z=z, steps=7, model="vae4")
    expected = ("vae4", version_number(catalog, "fashion-vae4-decoder"))
    assert (over_http.model, over_http.version) == (over_grpc.model, over_grpc.version) == expected
    assert over_http.z.shape == (7, 4) and over_http.images.shape == (7, 28, 28)
    np.testing.assert_allclose(over_grpc.z, over_http.z, atol=1e-6)
    np.testing.assert_allclose(over_grpc.images, over_http.images, atol=ATOL)
    np.testing.assert_allclose(over_http.z[[0, -1]], z, atol=1e-6)

    # Between two images: the path runs between their z_mean.
    from_http, from_grpc = http.interpolate(images=garments[:2], steps=5), grpc.interpolate(images=garments[:2], steps=5)
    np.testing.assert_allclose(from_http.z[[0, -1]], http.encode(garments[:2]).z_mean, atol=ATOL)
    np.testing.assert_allclose(from_grpc.images, from_http.images, atol=ATOL)

    strip_http, strip_grpc = (
        png_pixels(http.interpolate_png(z=z, steps=7, model="vae4")),
        png_pixels(grpc.interpolate_png(z=z, steps=7, model="vae4")),
    )
    assert strip_http.shape == strip_grpc.shape == (28, 7 * 28)
    assert np.abs(strip_http - strip_grpc).max() <= 1
    for gif in (http.interpolate_gif(images=garments[:2], steps=5), grpc.interpolate_gif(images=garments[:2], steps=5)):
        with Image.open(io.BytesIO(gif)) as img:
            assert (img.format, img.size, img.n_frames) == ("GIF", (28, 28), 5)


INTERPOLATE_MISTAKES = [
    {"z": [[0.0, 0.0], [1.0, 1.0]], "steps": 1},
    {"z": [[0.0, 0.0], [1.0, 1.0]], "steps": 101},
    {"z": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]},
    {"z": [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]},
    {"images": np.zeros((3, 28, 28), np.uint8)},
    {"images": np.zeros((2, 27, 28), np.uint8)},
    {},
]


@pytest.mark.parametrize(
    "options",
    INTERPOLATE_MISTAKES,
    ids=lambda o: ",".join(f"{k}={np.shape(v)}" if k != "steps" else f"steps={v}" for k, v in o.items()) or "nothing",
)
def test_interpolate_mistakes_fail_alike_on_both_transports(http: HTTPClient, grpc: GRPCClient, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as over_http:
        http.interpolate(**options)
    with pytest.raises(InvalidRequestError) as over_grpc:
        grpc.interpolate(**options)
    assert over_grpc.value.message == over_http.value.message


@pytest.mark.parametrize("model", ["lstm", "ensemble", "fashion-vae2-decoder"])
def test_encoding_with_another_kind_of_model_fails_alike(http: HTTPClient, grpc: GRPCClient, garments: np.ndarray, model: str) -> None:
    with pytest.raises(InvalidRequestError) as over_http:
        http.encode(garments[:1], model=model)
    with pytest.raises(InvalidRequestError) as over_grpc:
        grpc.encode(garments[:1], model=model)
    assert over_grpc.value.message == over_http.value.message
    assert over_http.value.message.endswith("not an encoder; encoders: vae2, vae4")


def test_plots_and_the_framed_manifold_over_http(http: HTTPClient) -> None:
    for picture, size in (
        (http.plot_clusters(model="vae4", dims=(2, 3)), (720, 560)),
        (http.plot_confusion(model="ensemble"), (480, 492)),
        (http.manifold(n=4, axes=True), (4 * 28 + 72, 4 * 28 + 76)),
    ):
        with Image.open(io.BytesIO(picture)) as img:
            assert (img.format, img.size) == ("PNG", size)
    with pytest.raises(InvalidRequestError, match="dims"):
        http.plot_clusters(dims=(0, 0))


def test_models_over_grpc_report_metrics_and_provider(grpc: GRPCClient, catalog: dict[str, dict[str, Any]]) -> None:
    for entry in grpc.models():
        described = catalog[entry["store_name"]]
        assert (entry.get("metrics"), entry.get("provider")) == (described["metrics"], described["provider"]), entry["store_name"]


# -- CLI -----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SERVING_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "clients", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def test_cli_classify_png_and_npy(server: Any, http: HTTPClient, tmp_path: Path) -> None:
    path = write_png(tmp_path / "digit.png", server.test_images[0])
    expected = http.classify_image(path)
    run = cli("--url", server.http_url, "classify", str(path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{path}: {expected.label}  (")
    assert f"[{expected.model} {expected.version}]" in run.stdout

    batch = tmp_path / "batch.npy"
    np.save(batch, server.test_images[:5])
    run = cli("classify", str(batch), "--model", "dense-rnn", "--json", "--url", server.http_url)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    probs = http.classify_bulk(server.test_images[:5], model="dense-rnn")
    assert [(r["file"], r["index"], r["label"]) for r in doc] == [(str(batch), i, int(probs[i].argmax())) for i in range(5)]
    np.testing.assert_allclose([r["probabilities"] for r in doc], probs, atol=ATOL)


def test_cli_classify_over_grpc_matches_http(server: Any, http: HTTPClient, tmp_path: Path) -> None:
    path = write_png(tmp_path / "digit.png", server.test_images[1])
    run = cli("--grpc", server.grpc_target, "classify", str(path), "--model", "lstm", "--json")
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)
    expected = http.classify_image(path, model="lstm")
    assert (result["label"], result["model"]) == (expected.label, "lstm")
    np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=ATOL)


def test_cli_writes_pngs(server: Any, http: HTTPClient, catalog: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    z = ["1.4", "-1.3"] + ["0"] * (latent_dim(catalog, "vae2") - 2)
    run = cli("--url", server.http_url, "generate", "--z", *z, "-o", str(tmp_path / "one.png"))
    assert run.returncode == 0, run.stderr
    one = png_pixels((tmp_path / "one.png").read_bytes())
    assert one.shape == (28, 28)
    expected = png_pixels(to_png(http.generate([[float(v) for v in z]])[0]))
    assert np.abs(one - expected).max() <= 1

    run = cli("--url", server.http_url, "sample", "-n", "16", "--seed", "1", "-o", str(tmp_path / "grid.png"))
    assert run.returncode == 0, run.stderr
    grid = png_pixels((tmp_path / "grid.png").read_bytes())
    assert grid.shape == tile(np.zeros((16, 28, 28)), ncols=4).shape == (112, 112)
    assert np.abs(grid - png_pixels(to_png(tile(http.sample(16, seed=1), ncols=4)))).max() <= 1

    run = cli("--url", server.http_url, "manifold", "--n", "6", "--scale", "1.0", "-o", str(tmp_path / "m.png"))
    assert run.returncode == 0, run.stderr
    assert png_pixels((tmp_path / "m.png").read_bytes()).shape == (168, 168)

    run = cli("--grpc", server.grpc_target, "sample", "-n", "16", "--seed", "1", "-o", str(tmp_path / "grid-grpc.png"))
    assert run.returncode == 0, run.stderr
    assert np.abs(png_pixels((tmp_path / "grid-grpc.png").read_bytes()) - grid).max() <= 1


def test_cli_models_and_health(server: Any, catalog: dict[str, dict[str, Any]]) -> None:
    run = cli("--url", server.http_url, "models", "--json")
    assert run.returncode == 0, run.stderr
    listed = {m["store_name"] for m in json.loads(run.stdout)}
    assert set(catalog) <= listed
    run = cli("--url", server.http_url, "models")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split()[:3] == ["NAME", "TASK", "VERSION"]
    assert all(store in run.stdout for store in catalog)

    run = cli("--url", server.http_url, "health")
    assert (run.returncode, run.stdout) == (0, "live: yes\nready: yes\n")


def test_cli_bad_requests_exit_2(server: Any, catalog: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    too_many = ["0.5"] * (latent_dim(catalog, "vae2") + 1)
    run = cli("--url", server.http_url, "generate", "--z", *too_many, "-o", str(tmp_path / "x.png"))
    assert run.returncode == 2 and run.stderr.startswith("error: "), run.stderr
    assert not (tmp_path / "x.png").exists()

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 27, 28), np.uint8))
    run = cli("--url", server.http_url, "classify", str(bad))
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "28" in run.stderr

    png = write_png(tmp_path / "digit.png", server.test_images[0])
    run = cli("--url", server.http_url, "classify", str(png), "--model", "no-such-model")
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "no-such-model" in run.stderr

    run = cli("--grpc", server.grpc_target, "manifold", "--dims", "0", "5", "-o", str(tmp_path / "m.png"))
    assert run.returncode == 2 and "error: " in run.stderr and "dims" in run.stderr


def test_cli_refuses_the_same_limits_alike_on_both_transports(server: Any, tmp_path: Path) -> None:
    for command, message in (
        (["sample", "-n", "1000"], "at most 256 latent points per request for model fashion-vae2-decoder, got 1000"),
        (["manifold", "--n", "100"], "n must be at most 40, got 100"),
    ):
        for transport in (["--url", server.http_url], ["--grpc", server.grpc_target]):
            run = cli(*transport, *command, "-o", str(tmp_path / "x.png"))
            assert (run.returncode, run.stderr) == (2, f"error: {message}\n"), (transport, command)
    assert not (tmp_path / "x.png").exists()


def test_cli_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    run = cli("--url", url, "--retries", "1", "models")
    assert run.returncode == 3 and run.stderr.startswith("error: cannot reach")
    run = cli("--url", url, "health")
    assert (run.returncode, run.stdout) == (3, "live: no\nready: no\n")


def test_cli_classify_npy_names_the_model_and_version_on_both_transports(
    server: Any, catalog: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, server.test_images[:3])
    docs = []
    for transport in (["--url", server.http_url], ["--grpc", server.grpc_target]):
        run = cli(*transport, "classify", str(batch), "--json")
        assert run.returncode == 0, run.stderr
        docs.append(json.loads(run.stdout))
    [default] = [m for m in catalog.values() if m["task"] == "classification" and m["default"]]
    for doc in docs:
        assert {(r["model"], r["version"]) for r in doc} == {(default["name"], str(default["version_number"]))}
    np.testing.assert_allclose([r["probabilities"] for r in docs[0]], [r["probabilities"] for r in docs[1]], atol=ATOL)

    run = cli("--url", server.http_url, "classify", str(batch), "--model", "ensemble", "--members", "--json")
    assert run.returncode == 0, run.stderr
    assert all(set(r["members"]) == set(CLASSIFIERS) - {"ensemble"} for r in json.loads(run.stdout))
    run = cli("--grpc", server.grpc_target, "classify", str(batch), "--model", "ensemble", "--members")
    assert run.returncode == 2 and "not offered over gRPC" in run.stderr and "use HTTP" in run.stderr


def test_cli_vae_commands_agree_across_transports(server: Any, garments: np.ndarray, tmp_path: Path) -> None:
    shirt = write_png(tmp_path / "shirt.png", garments[0])
    boot = write_png(tmp_path / "boot.png", garments[1])
    items = tmp_path / "items.npy"
    np.save(items, garments[:4])
    outputs: dict[str, dict[str, Any]] = {}
    for name, transport in (("http", ["--url", server.http_url]), ("grpc", ["--grpc", server.grpc_target])):
        out = tmp_path / name
        out.mkdir()
        got: dict[str, Any] = {}
        run = cli(*transport, "encode", str(shirt), str(items), "--model", "vae4", "--json")
        assert run.returncode == 0, run.stderr
        got["encode"] = json.loads(run.stdout)
        run = cli(*transport, "reconstruct", str(items), "--json", "-o", str(out / "pairs.png"))
        assert run.returncode == 0, run.stderr
        got["reconstruct"] = json.loads(run.stdout.split("\nwrote ")[0])
        got["pairs"] = png_pixels((out / "pairs.png").read_bytes())
        for target in ("walk.gif", "walk.png", "walk.npy"):
            run = cli(*transport, "interpolate", "--z", "-2", "1.5", "--to", "2", "-1.5", "--steps", "6", "-o", str(out / target))
            assert run.returncode == 0 and run.stdout.startswith(f"wrote {out / target}"), run.stderr
        run = cli(*transport, "interpolate", "--images", str(shirt), str(boot), "--steps", "4", "-o", str(out / "between.npy"))
        assert run.returncode == 0, run.stderr
        got["walk"], got["between"] = np.load(out / "walk.npy"), np.load(out / "between.npy")
        got["strip"] = png_pixels((out / "walk.png").read_bytes())
        with Image.open(out / "walk.gif") as gif:
            assert (gif.size, gif.n_frames) == ((28, 28), 6)
        outputs[name] = got
    http_out, grpc_out = outputs["http"], outputs["grpc"]
    assert [(r["file"], r["index"], r["model"], r["version"]) for r in http_out["encode"]] == [
        (r["file"], r["index"], r["model"], r["version"]) for r in grpc_out["encode"]
    ]
    assert [r["index"] for r in http_out["encode"]] == [None, 0, 1, 2, 3]
    np.testing.assert_allclose([r["z_mean"] for r in http_out["encode"]], [r["z_mean"] for r in grpc_out["encode"]], atol=ATOL)
    assert (
        set(http_out["reconstruct"])
        == set(grpc_out["reconstruct"])
        == {"file", "model", "version", "loss", "reconstruction_loss", "kl", "z_mean"}
    )
    assert (http_out["reconstruct"]["model"], http_out["reconstruct"]["version"]) == (
        grpc_out["reconstruct"]["model"],
        grpc_out["reconstruct"]["version"],
    )
    np.testing.assert_allclose(http_out["reconstruct"]["loss"], grpc_out["reconstruct"]["loss"], rtol=1e-5)
    assert http_out["pairs"].shape == (4 * 28, 56) and np.abs(http_out["pairs"] - grpc_out["pairs"]).max() <= 1
    assert http_out["walk"].shape == (6, 28, 28) and http_out["between"].shape == (4, 28, 28)
    np.testing.assert_allclose(http_out["walk"], grpc_out["walk"], atol=ATOL)
    np.testing.assert_allclose(http_out["between"], grpc_out["between"], atol=ATOL)
    assert http_out["strip"].shape == (28, 6 * 28) and np.abs(http_out["strip"] - grpc_out["strip"]).max() <= 1


def test_cli_plots_over_http_and_a_clear_refusal_over_grpc(server: Any, tmp_path: Path) -> None:
    for argv, size in (
        (["plot", "confusion", "--model", "ensemble"], (480, 492)),
        (["plot", "clusters", "--model", "vae4", "--dims", "2", "3"], (720, 560)),
        (["manifold", "--n", "3", "--axes"], (3 * 28 + 72, 3 * 28 + 76)),
    ):
        out = tmp_path / f"{argv[1]}.png"
        run = cli("--url", server.http_url, *argv, "-o", str(out))
        assert run.returncode == 0, run.stderr
        with Image.open(out) as img:
            assert img.size == size
        out.unlink()
        run = cli("--grpc", server.grpc_target, *argv, "-o", str(out))
        assert run.returncode == 2 and run.stderr.startswith("error: ") and "not offered over gRPC" in run.stderr, run.stderr
        assert not out.exists()


def test_cli_models_shows_version_numbers_on_both_transports(server: Any, catalog: dict[str, dict[str, Any]]) -> None:
    tables = []
    for transport in (["--url", server.http_url], ["--grpc", server.grpc_target]):
        run = cli(*transport, "models")
        assert run.returncode == 0, run.stderr
        tables.append({line.split()[3]: line.split()[:3] for line in run.stdout.splitlines()[1:]})
    for store, described in catalog.items():
        expected = [described["name"], described["task"], str(described["version_number"])]
        assert tables[0][store] == tables[1][store] == expected, store

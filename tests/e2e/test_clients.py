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
    UnavailableError,
)
from contract.images import decode_image, latent_grid, mnist_preprocess, tile, to_png

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5
TASKS = ("classification", "generation")
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
    assert by_task == {"classification": set(CLASSIFIERS), "generation": set(GENERATORS)}
    assert sum(1 for m in catalog.values() if m["task"] == "classification" and m["default"]) == 1

    over_grpc = {m["store_name"]: m for m in grpc.models()}
    assert set(over_grpc) == set(catalog)
    for store, entry in over_grpc.items():
        described = catalog[store]
        assert (entry["name"], entry["task"]) == (described["name"], described["task"])
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
    assert {(p.model, p.version) for p in over_http} == {(model, described["version"])}
    assert {(p.model, p.version) for p in over_grpc} == {(model, str(described["version_number"]))}
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

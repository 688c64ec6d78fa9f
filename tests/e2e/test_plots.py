"""The notebooks' figures as PNG: the labelled manifold, label clusters and confusion matrices, from what training stored."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_http import CLASSIFIERS, assert_client_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


def png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(response.content))
    img.load()
    return img


@pytest.mark.parametrize("query,n", [({"model": "vae2"}, 30), ({"model": "vae4", "n": 12, "dims": "2,3", "fixed": "1,0,0,0"}, 12)])
def test_manifold_with_axes_frames_the_bare_grid(http, query, n):
    bare = png(http.get("/v1/generate/manifold", params=query))
    assert bare.size == (28 * n, 28 * n)  # the default stays the bare grid
    framed = png(http.get("/v1/generate/manifold", params={**query, "axes": "true"}))
    assert framed.size == (28 * n + 72, 28 * n + 76)
    # The grid inside the frame is the same decode, pixel for pixel (60 px of tick labels left, 28 of title on top).
    np.testing.assert_array_equal(np.asarray(framed.convert("L"))[28 : 28 + 28 * n, 60 : 60 + 28 * n], np.asarray(bare))
    assert http.get("/v1/generate/manifold", params={**query, "axes": "true"}).headers["x-cache"] == "hit"


@pytest.mark.parametrize("query", [{"model": "vae2"}, {"model": "vae4", "dims": "2,3"}, {"model": "vae4"}])
def test_label_clusters(http, query):
    response = http.get("/v1/plots/clusters", params=query)
    img = png(response)
    assert img.size == (720, 560) and img.mode == "RGB"
    assert response.headers["x-model"] == query["model"]
    # Ten classes in ten colours (matplotlib's tab10), and the same bytes every time.
    colours = {tuple(c) for c in np.asarray(img).reshape(-1, 3)}
    assert {(31, 119, 180), (255, 127, 14), (23, 190, 207)} <= colours
    assert http.get("/v1/plots/clusters", params=query).content == response.content


@pytest.mark.parametrize("model", [*CLASSIFIERS, "ensemble"])
def test_confusion_matrix_of_every_classifier(http, server, model):
    img = png(http.get("/v1/plots/confusion", params={"model": model}))
    assert img.size == (480, 492)
    store_name = f"mnist-{model}"
    evaluation = json.loads((server.model_dir(store_name) / "evaluation.json").read_text())
    matrix = np.array(evaluation["confusion_matrix"])
    entry = http.get(f"/v1/models/{store_name}").json()
    assert matrix.sum() == entry["training"]["test_size"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(entry["metrics"]["test_accuracy"])


@pytest.mark.parametrize(
    "path,params,status,words",
    [
        ("/v1/plots/clusters", {"model": "lstm"}, 400, ["not an encoder"]),
        ("/v1/plots/clusters", {"model": "vae9"}, 404, ["vae9"]),
        ("/v1/plots/clusters", {"model": "vae2", "dims": "0,2"}, 400, ["dims"]),
        ("/v1/plots/clusters", {"model": "vae4", "dims": "1"}, 400, ["dims"]),
        ("/v1/plots/clusters", {"model": "vae4", "dims": "a,b"}, 400, ["dims"]),
        ("/v1/plots/confusion", {"model": "vae2"}, 400, ["vae2", "not a classifier"]),
        ("/v1/generate/manifold", {"model": "vae2", "axes": "maybe"}, 400, ["axes"]),
    ],
)
def test_bad_plot_requests(http, path, params, status, words):
    assert_client_error(http.get(path, params=params), status, *words)

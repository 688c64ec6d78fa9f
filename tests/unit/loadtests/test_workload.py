from __future__ import annotations

import json

import numpy as np
import pytest

from loadtests import workload


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
    from serving.protocols.codec import npy_to_array

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

"""What the load tests send: the model catalog and pre-encoded request bodies from real MNIST test images.

Shared by the locustfile and the benchmark's load generator, so both send the same bytes.
Bodies are built once, before the run: the load generator should spend its CPU on sending.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MULTIPART_BOUNDARY = "loadtests-boundary-7d1c2f"


def default_data_dir() -> str:
    """``$DATA_DIR`` or the shared datasets next to the repository (as the tests use)."""
    return os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets")


def mnist_test_images(data_dir: str | None = None, limit: int = 2000) -> np.ndarray:
    """The first ``limit`` MNIST test images, uint8 [N, 28, 28]."""
    from training.data import load

    split = load("mnist", data_dir or default_data_dir())
    return np.ascontiguousarray(split.x_test[:limit])


@dataclass(frozen=True)
class Catalog:
    """The loaded models as ``GET /v1/models`` lists them."""

    classifiers: list[str]  # public names
    classifier_store_names: list[str]
    default_classifier: str | None
    generators: dict[str, int]  # public name -> latent_dim
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_models(cls, models: list[dict[str, Any]]) -> Catalog:
        """From the ``models`` list of ``GET /v1/models``."""
        ready = [m for m in models if m.get("ready", True)]
        # Single models only: the ensemble (an entry with members) would weigh seven models' compute in the mix.
        classifiers = [m for m in ready if m["task"] == "classification" and not m.get("members")]
        generators = {m["name"]: int(m["signature"].get("latent_dim") or 0) for m in ready if m["task"] == "generation"}
        default = next((m["name"] for m in classifiers if m.get("default")), None)
        return cls(
            classifiers=sorted(m["name"] for m in classifiers),
            classifier_store_names=sorted(m["store_name"] for m in classifiers),
            default_classifier=default,
            generators=generators,
            entries=models,
        )

    @classmethod
    def fetch(cls, http_url: str, timeout: float = 10.0) -> Catalog:
        """``GET {http_url}/v1/models``."""
        import httpx

        response = httpx.get(f"{http_url.rstrip('/')}/v1/models", timeout=timeout)
        response.raise_for_status()
        return cls.from_models(response.json()["models"])

    @property
    def manifold_model(self) -> str | None:
        """The generator the manifold users ask for: vae2 (the seed's), else any 2-D-or-more one."""
        if self.generators.get("vae2", 0) >= 2:
            return "vae2"
        return next((name for name, dim in sorted(self.generators.items()) if dim >= 2), None)

    def store_name(self, public_name: str) -> str:
        """The store name of a loaded model (``lstm`` -> ``mnist-lstm``)."""
        for m in self.entries:
            if public_name in (m["name"], m["store_name"]):
                return m["store_name"]
        raise KeyError(public_name)


def images_json(image: np.ndarray) -> str:
    """One uint8 28x28 image as the JSON text of a 28x28 integer list (0..255)."""
    return json.dumps(np.asarray(image, dtype=np.uint8).tolist(), separators=(",", ":"))


def classify_body(image_json: str, model: str | None) -> bytes:
    """``POST /v1/classify`` body for one image (pre-encoded by :func:`images_json`)."""
    head = f'{{"model":{json.dumps(model)},' if model else "{"
    return f'{head}"images":[{image_json}]}}'.encode()


def multipart_png(png: bytes, field_name: str = "image", filename: str = "digit.png") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its Content-Type."""
    b = MULTIPART_BOUNDARY
    head = (
        f'--{b}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    return head + png + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def npy_body(images: np.ndarray) -> bytes:
    """A ``.npy`` body (no pickle) for ``POST /v1/classify/batch``."""
    from serving.protocols.codec import array_to_npy

    return array_to_npy(images)


def generate_body(model: str, latent_dim: int, rng: random.Random) -> bytes:
    """``POST /v1/generate`` body: one random z ~ N(0, 1), PNG answer."""
    z = [round(rng.gauss(0.0, 1.0), 4) for _ in range(latent_dim)]
    return json.dumps({"model": model, "z": [z], "format": "png"}, separators=(",", ":")).encode()

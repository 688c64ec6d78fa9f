"""Shared fakes for the data plane's unit tests: three served models (no ONNX session) over one engine."""

from __future__ import annotations

from pathlib import Path

from serving.core.dataplane import DataPlane
from serving.core.engine import Engine
from serving.core.registry import Registry
from serving.core.runtime import ModelRuntime
from serving.settings import Settings

CLASSIFIER_SIGNATURE = {
    "name": "mnist-lstm",
    "public_name": "lstm",
    "task": "classification",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "range": [0.0, 1.0]}],
    "labels": [str(i) for i in range(10)],
}
DECODER_SIGNATURE = {
    "name": "fashion-vae2-decoder",
    "public_name": "vae2",
    "task": "generation",
    "latent_dim": 2,
    "inputs": [{"name": "z", "dtype": "float32", "shape": [-1, 2], "range": None}],
    "outputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1], "range": [0.0, 1.0]}],
}
ENCODER_SIGNATURE = {
    **DECODER_SIGNATURE,
    "name": "fashion-vae2-encoder",
    "task": "encoding",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28, 1], "range": [0.0, 1.0]}],
    "outputs": [{"name": "z_mean", "dtype": "float32", "shape": [-1, 2]}, {"name": "z_log_var", "dtype": "float32", "shape": [-1, 2]}],
}


def runtime(signature: dict) -> ModelRuntime:
    rt = ModelRuntime(
        store_name=signature["name"],
        version="abc",
        path=Path("/nonexistent"),
        metadata={},
        signature=signature,
        providers=["CPUExecutionProvider"],
        created=1700000000.5,
    )
    rt.ready = True
    return rt


CLASSIFIER, DECODER, ENCODER = runtime(CLASSIFIER_SIGNATURE), runtime(DECODER_SIGNATURE), runtime(ENCODER_SIGNATURE)


PLANE = DataPlane(Engine(Settings.from_env({}), Registry([CLASSIFIER, DECODER, ENCODER])))

"""The textbook BentoML 1.4 service for the same ONNX file: a peer for the benchmark.

What the BentoML docs teach: one ``@bentoml.service`` class, an ``onnxruntime.InferenceSession``
made in ``__init__``, and one adaptive-batching ``@bentoml.api`` taking a numpy array. Nothing from
``serving/``; the model file comes from ``$TEXTBOOK_MODEL_PATH`` (``.../model.onnx``; its
``signature.json`` beside it names the input and output).

    TEXTBOOK_MODEL_PATH=.../model.onnx bentoml serve loadtests.peers.textbook_bento:TextbookService --port P

Request: ``POST /predict`` with ``{"images": [[[...28 floats...], ... 28 rows]]}`` (shape [1, 28, 28],
values 0..1); the answer is the [1, 10] probabilities as JSON. One worker (BentoML's default when
``workers`` is not set). ``TEXTBOOK_MAX_LATENCY_MS`` (default 1000, as in the docs' examples) is the
adaptive batcher's latency budget.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType

from contract.artifacts import read_signature
from contract.triton import MAX_BATCH_SIZE  # the same batch limit as our engine and the Triton peer

MAX_LATENCY_MS = int(os.environ.get("TEXTBOOK_MAX_LATENCY_MS", "1000"))


@bentoml.service(traffic={"timeout": 60})
class TextbookService:
    def __init__(self) -> None:
        import onnxruntime as ort

        model_path = Path(os.environ["TEXTBOOK_MODEL_PATH"])
        signature = read_signature(model_path.parent)
        self.input_name = signature["inputs"][0]["name"]
        self.output_name = signature["outputs"][0]["name"]
        # CUDA where there is a GPU, else the CPU (asking for CUDA without one only logs an error).
        gpu = Path("/dev/nvidia0").exists() and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(model_path), providers=providers)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, images: Annotated[np.ndarray, DType("float32")]) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: images})[0]

"""What a classifier's answer says beyond its probabilities: how sure it is, and whether the input is a digit at all.

Every protocol that classifies offers three outputs next to the model's own ``probabilities``:

- ``confidence`` (FP32, one per image): the calibrated probability of the label, from the temperature
  training fitted on held-out images (``signature.json``'s ``calibration``; 1.0 for models without one);
- ``digit`` (BOOL): false when the input is not a digit to read;
- ``reason`` (BYTES): why not, a code of :data:`contract.calibration.REASONS` (``blank``, ``uniform``,
  ``not-a-digit``, ``low-confidence``), empty for a digit. ``/v1`` adds a sentence (``detail``).

The data plane computes them here, from the rows the model saw and its answer, for every front alike
(:func:`contract.calibration.judge` decides).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from contract import calibration

if TYPE_CHECKING:
    from .runtime import ModelRuntime

CONFIDENCE, DIGIT, REASON = "confidence", "digit", "reason"
OUTPUTS: list[dict[str, Any]] = [
    {"name": CONFIDENCE, "dtype": "float32", "shape": [-1]},
    {"name": DIGIT, "dtype": "bool", "shape": [-1]},
    {"name": REASON, "dtype": "object", "shape": [-1]},
]
NAMES = tuple(o["name"] for o in OUTPUTS)


def outputs_of(rt: ModelRuntime) -> list[dict[str, Any]]:
    """The outputs a request may name: the model's own (its signature's), then for a classifier the verdict's, answered when named."""
    own: list[dict[str, Any]] = list(rt.signature["outputs"])
    return own + OUTPUTS if rt.kind.classifies else own


def judge(rt: ModelRuntime, rows: np.ndarray, probabilities: np.ndarray, min_confidence: float) -> calibration.Judgement:
    """The verdict on each row ``rt`` answered with ``probabilities``."""
    return calibration.judge(rows, calibration.calibrate(probabilities, rt.temperature), min_confidence)


def arrays(judgement: calibration.Judgement) -> dict[str, np.ndarray]:
    """The verdict as the three output tensors (``reason`` as bytes, as BYTES tensors carry it)."""
    return {
        CONFIDENCE: judgement.confidence,
        DIGIT: judgement.digit,
        REASON: np.array([r.encode() for r in judgement.reason], dtype=object)
        if not judgement.digit.all()
        else np.full(len(judgement.digit), b"", dtype=object),
    }

"""Confidence that means something: temperature scaling, the ensemble's combination, calibration error, and
the "not a digit" judgement. numpy only; training fits the temperatures, serving applies them, and the
upload benchmark scores both with these same functions.

A classifier's output is softmax probabilities ``p``. Temperature scaling divides the logits by ``T``; since
``log p`` is the logits up to a constant per row, ``calibrate(p, T) = softmax(log p / T)``: the same label,
a confidence (the top probability) that matches how often that label is right on held-out data. ``T`` is
fitted by minimising the negative log-likelihood on held-out images (:func:`fit_temperature`).

The ensemble weighs each member's calibrated answer by that member's own calibrated confidence on the
image (:func:`combine`): a member that is unsure of an image counts for less on it, and an uncalibrated,
confidently wrong member can no longer outvote the others by its raw confidence alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Probabilities are clipped here before the log (softmax outputs reach 0.0 in float32).
EPSILON = 1e-7
# The range fit_temperature searches (log-uniformly).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
ECE_BINS = 15
# Judgement thresholds, on the 28 x 28 input in [0, 1] and on the calibrated answer.
# Total ink (sum of pixels) below this is an empty canvas; MNIST's lightest test digit has about 20.
MIN_INK = 3.0
# A digit covers a part of its 28 x 28 frame: MNIST's test digits cover at most 32 % (pixels >= 0.5;
# 5,000 of them); a filled shape fitted into the 20 x 20 box as uploads are covers 51 %. Beyond this
# the input is a photo or a filled shape, not a digit.
MAX_COVER = 0.4
# A uniform input: no pixel stands out from the others.
MIN_SPREAD = 0.1
# Below this calibrated confidence the answer is "not a digit" (the label is still given).
MIN_CONFIDENCE = 0.5


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise, float32; ``T = 1`` gives ``p`` back (renormalised)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        out: np.ndarray = (p / np.maximum(p.sum(axis=-1, keepdims=True), EPSILON)).astype(np.float32)
        return out
    logits = np.log(np.clip(p, EPSILON, 1.0)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    scaled: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return scaled


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    picked = p[np.arange(len(p)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(picked, EPSILON, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the held-out negative log-likelihood (golden-section search on log T)."""
    if len(probabilities) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(calibrate(probabilities, math.exp(log_t)), labels)

    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return round(math.exp((lo + hi) / 2), 4)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by each bin's share."""
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def combine(members: Sequence[np.ndarray], temperatures: Sequence[float] | None = None) -> np.ndarray:
    """The ensemble's answer: each member calibrated by its temperature, weighted per image by its own
    calibrated confidence (top probability), float32 (N, classes). Without temperatures, T = 1 each."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    temps = list(temperatures) if temperatures is not None else [1.0] * len(members)
    if len(temps) != len(members):
        raise ValueError(f"{len(members)} members but {len(temps)} temperatures")
    calibrated = np.stack([calibrate(p, t) for p, t in zip(members, temps)]).astype(np.float64)
    weights = calibrated.max(axis=2, keepdims=True)
    mixed = (calibrated * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), EPSILON)
    out: np.ndarray = (mixed / mixed.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


# The documented reasons (README "Confidence and 'not a digit'"); "" when the answer is a digit.
BLANK, UNIFORM, NOT_A_DIGIT, UNSURE = "blank", "uniform", "not-a-digit", "low-confidence"
REASONS = (BLANK, UNIFORM, NOT_A_DIGIT, UNSURE)
# An empty input: nothing drawn, or an upload in which the preprocessing found no digit (only specks,
# frames, filled areas or lighting; contract.images.mnist_preprocess answers zeros then).
EMPTY = "no digit found: the image is empty, or holds only specks, frames, filled areas or shading"


@dataclass(frozen=True)
class Judgement:
    """Per row of a batch: the calibrated confidence, whether the answer is a digit, and if not, why."""

    confidence: np.ndarray  # float32 (N,): the calibrated probability of the label
    digit: np.ndarray  # bool (N,)
    reason: np.ndarray  # object (N,): a code of REASONS, "" for a digit
    detail: np.ndarray  # object (N,): a sentence saying why, "" for a digit


def judge(pixels: np.ndarray, probabilities: np.ndarray, min_confidence: float = MIN_CONFIDENCE) -> Judgement:
    """``pixels`` (N, 28, 28) in [0, 1], white on black; ``probabilities`` the calibrated answer (N, classes).
    The input decides first (empty, one flat level, inked all over), then the confidence."""
    x = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
    p = np.asarray(probabilities, dtype=np.float32)
    ink = x.sum(axis=1)
    top = x.max(axis=1) if x.size else np.zeros(len(x), dtype=np.float32)
    spread = top - (x.min(axis=1) if x.size else top)
    cover = (x >= 0.5).mean(axis=1) if x.size else np.zeros(len(x))
    confidence = p.max(axis=1).astype(np.float32) if len(p) else np.zeros(0, dtype=np.float32)
    reason = np.full(len(x), "", dtype=object)
    detail = np.full(len(x), "", dtype=object)
    flat, scant, covered, unsure = spread < MIN_SPREAD, ink < MIN_INK, cover > MAX_COVER, confidence < min_confidence
    for i in np.flatnonzero(flat | scant | covered | unsure):  # usually none: the per-row words only for the rest
        if flat[i]:
            empty = bool(scant[i] or top[i] < MIN_SPREAD)
            reason[i] = BLANK if empty else UNIFORM
            detail[i] = EMPTY if empty else f"the image is one flat level ({top[i]:.2f}): no digit to read"
        elif scant[i]:
            reason[i], detail[i] = BLANK, f"almost no ink ({ink[i]:.1f} of 784): no digit to read"
        elif covered[i]:
            reason[i], detail[i] = NOT_A_DIGIT, f"ink covers {cover[i]:.0%} of the frame; a digit covers at most {MAX_COVER:.0%}"
        else:
            reason[i], detail[i] = UNSURE, f"confidence {confidence[i]:.2f} is below {min_confidence:.2f}"
    return Judgement(confidence, reason == "", reason, detail)

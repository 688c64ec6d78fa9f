"""Temperature scaling, calibration error, the ensemble's combination and the "not a digit" judgement."""

from __future__ import annotations

import numpy as np
import pytest

from contract import calibration as cal


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Answers right 70 % of the time that claim about 97 %: what an over-fitted softmax looks like."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    said = np.where(rng.random(n) < 0.7, labels, (labels + rng.integers(1, 10, n)) % 10)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), said] += 6.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), labels


def test_calibrate_keeps_the_label_and_t1_is_the_identity():
    p, _ = overconfident(200)
    np.testing.assert_allclose(cal.calibrate(p, 1.0), p, atol=1e-6)
    for t in (0.5, 2.0, 7.0):
        q = cal.calibrate(p, t)
        assert q.dtype == np.float32 and np.array_equal(q.argmax(1), p.argmax(1))
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    assert (cal.calibrate(p, 3.0).max(1) < p.max(1)).all()  # T > 1 softens


def test_fitted_temperature_lowers_the_held_out_calibration_error():
    p, labels = overconfident()
    t = cal.fit_temperature(p[:2000], labels[:2000])
    assert t > 1.5  # over-confident answers need softening
    before = cal.expected_calibration_error(p[2000:], labels[2000:])
    after = cal.expected_calibration_error(cal.calibrate(p[2000:], t), labels[2000:])
    assert before > 0.2 and after < before / 2, (before, after)
    assert cal.negative_log_likelihood(cal.calibrate(p[2000:], t), labels[2000:]) < cal.negative_log_likelihood(p[2000:], labels[2000:])


def test_ece_of_a_perfectly_calibrated_answer_is_small_and_of_a_liar_large():
    labels = np.arange(10).repeat(100)
    sure = np.eye(10, dtype=np.float32)[labels]
    assert cal.expected_calibration_error(sure, labels) == pytest.approx(0.0)
    assert cal.expected_calibration_error(sure, (labels + 1) % 10) == pytest.approx(1.0)
    assert cal.expected_calibration_error(np.zeros((0, 10)), np.zeros(0)) == 0.0


def test_combine_lets_the_sure_member_outweigh_a_hesitant_one_and_tempers_the_overconfident():
    sure = np.array([[0.9, 0.1]], np.float32)
    hesitant = np.array([[0.4, 0.6]], np.float32)
    mixed = cal.combine([sure, hesitant])
    assert mixed.dtype == np.float32 and mixed.argmax() == 0
    # weights 0.9 and 0.6: (0.9 * [0.9, 0.1] + 0.6 * [0.4, 0.6]) / 1.5
    np.testing.assert_allclose(mixed, [[0.7, 0.3]], atol=1e-6)
    # a confidently wrong member, known from held-out data to be over-confident (T = 10), counts for little
    liar = np.array([[0.01, 0.99]], np.float32)
    right = np.array([[0.8, 0.2]], np.float32)
    assert cal.combine([right, liar]).argmax() == 1
    assert cal.combine([right, liar], [1.0, 10.0]).argmax() == 0
    with pytest.raises(ValueError):
        cal.combine([right], [1.0, 2.0])
    with pytest.raises(ValueError):
        cal.combine([])


def stroke() -> np.ndarray:
    x = np.zeros((28, 28), np.float32)
    x[4:24, 12:16] = 1.0
    return x


def test_judge_names_what_is_not_a_digit():
    sure = np.eye(10, dtype=np.float32)[[1]]
    x = np.stack([np.zeros((28, 28)), np.full((28, 28), 0.6), stroke(), np.ones((28, 28)), stroke(), np.where(stroke() > 0, 0.004, 0.0)])
    rng = np.random.default_rng(1)
    x[3] = (rng.random((28, 28)) > 0.2).astype(np.float32)  # ink nearly everywhere: a photo, not a digit
    p = np.repeat(sure, 6, axis=0)
    p[4] = 0.1  # a flat answer
    j = cal.judge(x, p)
    assert j.reason.tolist() == ["blank", "uniform", "", "not-a-digit", "low-confidence", "blank"]
    assert j.digit.tolist() == [False, False, True, False, False, False]
    assert j.detail[2] == "" and "empty" in j.detail[0] and "covers" in j.detail[3]
    assert j.confidence.dtype == np.float32 and j.confidence[2] == pytest.approx(1.0)
    assert set(j.reason) - {""} <= set(cal.REASONS)
    assert cal.judge(x[2:3], p[2:3] * 0 + 0.1, min_confidence=0.05).digit.tolist() == [True]


def test_judge_accepts_real_mnist_digits(datasets_dir):
    from training.data import read_idx

    images = read_idx(next((datasets_dir / "mnist").glob("t10k-images*"))).astype(np.float32) / 255.0
    sure = np.eye(10, dtype=np.float32)[np.zeros(len(images), int)]
    j = cal.judge(images, sure)
    assert j.digit.mean() == 1.0, j.reason[~j.digit][:5]

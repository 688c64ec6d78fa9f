"""The VAE routes' arithmetic, shared by the server (``serving.core.notebook``) and the gRPC client, which
re-does those routes from model calls (``clients.composite``): one copy, so both answer alike."""

from __future__ import annotations

import numpy as np

# The interpolation route's rule: 2 <= steps <= MAX_STEPS.
MAX_STEPS = 100
# Keras' binary cross-entropy clips predictions to [eps, 1 - eps]; the notebook's loss sums it over the pixels.
BCE_EPSILON = 1e-7


def reconstruction_loss(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per image: binary cross-entropy of prediction ``p`` against pixels ``x``, summed over the pixels."""
    x = x.reshape(len(x), -1).astype(np.float64)
    p = np.clip(p.reshape(len(p), -1).astype(np.float64), BCE_EPSILON, 1.0 - BCE_EPSILON)
    return np.asarray(-(x * np.log(p) + (1.0 - x) * np.log(1.0 - p)).sum(axis=1))


def kl_divergence(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """Per image: KL(N(z_mean, exp(z_log_var)) || N(0, I)), summed over the latent dims (the training loss's KL)."""
    m, v = z_mean.astype(np.float64), z_log_var.astype(np.float64)
    return np.asarray(-0.5 * (1.0 + v - m**2 - np.exp(v)).sum(axis=1))


def interpolation_path(ends: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` float32 points on the straight line from ``ends[0]`` to ``ends[1]``, both included."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return np.ascontiguousarray((1.0 - t) * ends[0] + t * ends[1], dtype=np.float32)

"""PNG reports of a training run: confusion matrix, curves, latent manifold, clusters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on build machines
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """Confusion matrix with counts in the cells."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black")
    return _save(fig, path)


def plot_curves(history: dict[str, list[float]], path: Path, title: str, test: dict[str, float] | None = None) -> Path:
    """One panel per training metric (loss, accuracy, ...), epochs on x; test figures as dashed lines."""
    plt = _pyplot()
    keys = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], marker="o", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label=f"validation {key}")
        if test and f"test_{key}" in test:
            ax.axhline(test[f"test_{key}"], linestyle="--", color="gray", label=f"test {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def manifold_latents(base: Sequence[float], dims: tuple[int, int], n: int = 30, scale: float = 2.0) -> np.ndarray:
    """``n*n`` latent vectors in display order (rows top to bottom, columns left to right).

    ``base`` with ``z[dims[0]]`` running over [-scale, scale] left to right and
    ``z[dims[1]]`` from +scale (top) to -scale (bottom), as in the seed.
    """
    grid_x = np.linspace(-scale, scale, n)
    grid_y = np.linspace(-scale, scale, n)[::-1]
    z = np.tile(np.asarray(base, dtype=np.float32), (n * n, 1))
    yy, xx = np.meshgrid(grid_y, grid_x, indexing="ij")
    z[:, dims[0]] = xx.ravel()
    z[:, dims[1]] = yy.ravel()
    return z


def decode_manifold(
    decode: Callable[[np.ndarray], np.ndarray],
    base: Sequence[float],
    dims: tuple[int, int],
    n: int = 30,
    scale: float = 2.0,
) -> np.ndarray:
    """The ``[n*28, n*28]`` mosaic of a latent grid, decoded in ONE batched call.

    (The seed called ``decoder.predict`` once per grid point: 900 calls.)
    """
    images = np.asarray(decode(manifold_latents(base, dims, n=n, scale=scale)))
    return tile(images, n)


def tile(images: np.ndarray, n: int) -> np.ndarray:
    """``[n*n, h, w(, 1)]`` -> one ``[n*h, n*w]`` mosaic, row-major."""
    images = images.reshape(n * n, images.shape[1], images.shape[2])
    h, w = images.shape[1:]
    return images.reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)


def plot_manifold(mosaic: np.ndarray, n: int, scale: float, dims: tuple[int, int], base: Sequence[float], path: Path, title: str) -> Path:
    """The decoded latent grid, axes labelled with latent coordinates."""
    plt = _pyplot()
    side = mosaic.shape[0] // n
    fig, ax = plt.subplots(figsize=(12, 12))
    ax.imshow(mosaic, cmap="Greys_r", vmin=0.0, vmax=1.0)
    centers = np.arange(side // 2, n * side, side)
    coords = np.round(np.linspace(-scale, scale, n), 1)
    step = max(1, n // 10)
    ax.set_xticks(centers[::step], coords[::step])
    ax.set_yticks(centers[::step], coords[::-1][::step])
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    fixed = [f"z[{i}]={v:g}" for i, v in enumerate(base) if i not in dims]
    ax.set_title(title + (f" ({', '.join(fixed)})" if fixed else ""))
    return _save(fig, path)


def plot_latent_scatter(z_mean: np.ndarray, labels: np.ndarray, label_names: Sequence[str], path: Path, title: str) -> Path:
    """Test-set ``z_mean`` coloured by class, one panel per pair of consecutive latent dims."""
    plt = _pyplot()
    pairs = [(i, i + 1) for i in range(0, z_mean.shape[1] - 1, 2)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(9 * len(pairs), 8), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (a, b) in zip(axes[0], pairs):
        for k, name in enumerate(label_names):
            mask = labels == k
            ax.scatter(z_mean[mask, a], z_mean[mask, b], s=6, color=cmap(k), label=name, alpha=0.7)
        ax.set_xlabel(f"z[{a}]")
        ax.set_ylabel(f"z[{b}]")
        ax.legend(markerscale=3, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    fig.clf()
    _pyplot().close(fig)
    return path

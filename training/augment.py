"""Random distortions of MNIST training batches, so the classifiers read digits that are not MNIST's own.

Users upload photos, prints and drawings of digits; after the upload preprocessing (contract.images) they
are still shifted, tilted, slanted, thicker or thinner, softer and noisier than MNIST's centred,
anti-aliased pen strokes. :func:`augment_batch` draws such variations per image, vectorised over the
batch (one ``ImageProjectiveTransformV3`` call with a matrix per image, pooling and one convolution for
the strokes and the blur), with stateless random ops: the same seed gives the same batch.
:func:`training_dataset` applies it to training batches only, in a ``tf.data`` map; validation and test
images are never distorted.

Thinner or blurred strokes keep the image's peak brightness (the upload preprocessing scales ink to a
peak of 1, as MNIST has). A share ``probability`` of the images is distorted, the others stay as MNIST drew them, so the models keep
their MNIST test accuracy within the same epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.catalog import IMAGE_SIDE


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly and how often each distortion is drawn (each range symmetric around "no change")."""

    probability: float = 0.5  # share of the images that are distorted at all
    shift: float = 2.5  # pixels, each axis, uniform in [-shift, shift]
    rotation: float = 12.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (0.85, 1.15)  # digit size factor, uniform
    shear: float = 0.2  # horizontal shear (slant), uniform in [-shear, shear]
    # Stroke thickness: a 3x3 max (thicker) or min (thinner) filter, blended in by a weight in [0.5, 1].
    dilate: float = 0.25  # probability of thicker strokes, of a distorted image
    erode: float = 0.15  # probability of thinner strokes
    blur: float = 0.3  # probability of a slight 3x3 Gaussian blur (sigma 1, blended by a weight in [0.3, 1])
    noise: float = 0.4  # probability of additive Gaussian noise
    noise_std: float = 0.08  # its standard deviation, uniform in [0, noise_std]


DEFAULT = AugmentConfig()

_CENTRE = (IMAGE_SIDE - 1) / 2.0  # pixel centres are at integer coordinates 0..27


def _uniform(shape, seed, lo, hi):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi, dtype=tf.float32)


def affine_transforms(batch, seed, config: AugmentConfig = DEFAULT):
    """``[batch, 8]`` projective transforms (output pixel -> input pixel), one random affine map per image
    around the image centre: rotation, horizontal shear, scale and shift."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = _uniform([batch], seeds[0], -1.0, 1.0) * (config.rotation * math.pi / 180.0)
    shear = _uniform([batch], seeds[1], -config.shear, config.shear)
    # Sample the size factor, then invert it: the transform maps output coordinates to input ones.
    zoom = _uniform([batch], seeds[2], config.scale[0], config.scale[1])
    shift_x = _uniform([batch], seeds[3], -config.shift, config.shift)
    shift_y = _uniform([batch], seeds[4], -config.shift, config.shift)

    cos, sin, inv = tf.cos(angle), tf.sin(angle), 1.0 / zoom
    # M = R(angle) @ [[1, shear], [0, 1]] @ diag(1/zoom, 1/zoom)
    m00, m01 = cos * inv, (cos * shear - sin) * inv
    m10, m11 = sin * inv, (sin * shear + cos) * inv
    c = _CENTRE
    a2 = c - m00 * c - m01 * c - shift_x
    b2 = c - m10 * c - m11 * c - shift_y
    zeros = tf.zeros([batch])
    return tf.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)


def _gaussian_kernel():
    import tensorflow as tf

    g = np.exp(-0.5 * np.arange(-1, 2) ** 2)  # sigma 1
    k = np.outer(g, g)
    return tf.constant((k / k.sum())[:, :, None, None], dtype=tf.float32)


def augment_batch(images, seed, config: AugmentConfig = DEFAULT):
    """Distort a batch of images ``[B, 28, 28]`` (float in [0, 1], or uint8 0..255) with the stateless
    ``seed`` (two integers); returns float32 ``[B, 28, 28]`` in [0, 1]. Each image is distorted with
    probability ``config.probability``; only those are computed on, the others come back unchanged."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images)
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    chosen = tf.where(_uniform([tf.shape(x)[0]], seeds[0], 0.0, 1.0) < config.probability)  # [k, 1] indices
    distorted = distort(tf.gather_nd(x, chosen), seeds[1], config)
    return tf.tensor_scatter_nd_update(x, chosen, distorted)


def distort(images, seed, config: AugmentConfig = DEFAULT):
    """Every distortion drawn for every image of a float32 batch ``[B, 28, 28]`` in [0, 1] (stateless
    ``seed``): stroke thickness, one affine resampling, blur, noise; clipped to [0, 1]."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=7)
    x = images[..., None]  # [B, 28, 28, 1]
    peak = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)

    def per_image(values):
        return values[:, None, None, None]

    # Stroke thickness: thicker (max filter), thinner (min filter) or as drawn.
    pick = _uniform([batch], seeds[0], 0.0, 1.0)
    weight = _uniform([batch], seeds[1], 0.5, 1.0)
    thicker = tf.cast(pick < config.dilate, tf.float32) * weight
    thinner = tf.cast((pick >= config.dilate) & (pick < config.dilate + config.erode), tf.float32) * weight
    dilated = tf.nn.max_pool2d(x, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-x, 3, 1, "SAME")
    x = x + per_image(thicker) * (dilated - x) + per_image(thinner) * (eroded - x)

    # Shift, rotation, scale and slant in one bilinear resampling, zeros outside the frame.
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=affine_transforms(batch, seeds[2], config),
        output_shape=tf.constant([IMAGE_SIDE, IMAGE_SIDE], tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )

    # A slight blur, blended in.
    blur = tf.cast(_uniform([batch], seeds[3], 0.0, 1.0) < config.blur, tf.float32) * _uniform([batch], seeds[4], 0.3, 1.0)
    x = x + per_image(blur) * (tf.nn.conv2d(x, _gaussian_kernel(), 1, "SAME") - x)
    # Thinning and blurring dim the strokes; uploads are preprocessed to a peak of 1, like MNIST: keep the peak.
    x = x * (peak / tf.maximum(tf.reduce_max(x, axis=[1, 2, 3], keepdims=True), 1e-6))

    # Additive noise.
    sub = tf.random.experimental.stateless_split(seeds[6], num=2)
    std = tf.cast(_uniform([batch], seeds[5], 0.0, 1.0) < config.noise, tf.float32) * _uniform([batch], sub[0], 0.0, config.noise_std)
    x = x + tf.random.stateless_normal(tf.shape(x), seed=sub[1]) * per_image(std)
    return tf.clip_by_value(x[..., 0], 0.0, 1.0)


def training_dataset(x_train: np.ndarray, y_train: np.ndarray, batch_size: int, epochs: int, seed: int, config: AugmentConfig = DEFAULT):
    """``(dataset, steps_per_epoch)``: every epoch reshuffled (seeded) and cut into batches of uint8
    images, each batch distorted with its own stateless seed ``(seed, batch index)`` — a different
    distortion every epoch, the same run for the same seed. ``epochs`` passes in one stream: give
    ``model.fit`` the steps per epoch."""
    import tensorflow as tf

    steps = -(-len(x_train) // batch_size)
    base = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    stream = base.shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size).repeat(epochs).enumerate()

    def distort(index, pair):
        images, labels = pair
        return augment_batch(images, tf.stack([tf.constant(seed, tf.int64), index]), config), labels

    dataset = stream.map(distort, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    return dataset, steps

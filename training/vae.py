"""Convolutional VAE for Fashion-MNIST (seed 004, after the keras-io example).

``encoder``: image ``[28, 28, 1]`` -> ``(z_mean, z_log_var, z)``;
``decoder``: ``z`` -> image ``[28, 28, 1]`` (sigmoid).
Loss = 784 * mean pixel binary cross-entropy + KL(q(z|x) || N(0, I)).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers, ops

from training.catalog import IMAGE_SIDE

_PIXELS = IMAGE_SIDE * IMAGE_SIDE


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and optimizer of one VAE, and how its manifold is drawn."""

    latent_dim: int
    filters: tuple[int, int]  # encoder convs; the decoder mirrors them
    dense_units: int
    learning_rate: float = 1e-3
    # The manifold varies two latent dims over [-scale, scale]^2 and holds the
    # others at manifold_base (the seed drew vae4 at z = [1, 0, x, y]).
    manifold_dims: tuple[int, int] = (0, 1)
    manifold_base: tuple[float, ...] = ()

    def base_vector(self) -> list[float]:
        """The latent vector the manifold starts from (zeros unless configured)."""
        return list(self.manifold_base) if self.manifold_base else [0.0] * self.latent_dim


CONFIGS: dict[str, VAEConfig] = {
    "vae2": VAEConfig(latent_dim=2, filters=(32, 64), dense_units=16),
    "vae4": VAEConfig(
        latent_dim=4,
        filters=(64, 128),
        dense_units=32,
        manifold_dims=(2, 3),
        manifold_base=(1.0, 0.0, 0.0, 0.0),
    ),
}


@keras.saving.register_keras_serializable(package="training")
class Sampling(layers.Layer):
    """Draws ``z = z_mean + exp(z_log_var / 2) * eps``, ``eps ~ N(0, I)``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Seeded from keras.utils.set_random_seed, so training runs repeat.
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def build_encoder(config: VAEConfig) -> keras.Model:
    """Two strided convs -> Dense -> ``z_mean``, ``z_log_var`` and a sample ``z``."""
    images = keras.Input((IMAGE_SIDE, IMAGE_SIDE, 1), name="images")
    x = layers.Conv2D(config.filters[0], 3, activation="relu", strides=2, padding="same")(images)
    x = layers.Conv2D(config.filters[1], 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(config.dense_units, activation="relu")(x)
    z_mean = layers.Dense(config.latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(config.latent_dim, name="z_log_var")(x)
    z = Sampling(name="z")([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(config: VAEConfig) -> keras.Model:
    """Dense -> 7x7 map -> two strided transposed convs -> sigmoid image."""
    side = IMAGE_SIDE // 4
    z = keras.Input((config.latent_dim,), name="z")
    x = layers.Dense(side * side * config.filters[1], activation="relu")(z)
    x = layers.Reshape((side, side, config.filters[1]))(x)
    x = layers.Conv2DTranspose(config.filters[1], 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(config.filters[0], 3, activation="relu", strides=2, padding="same")(x)
    images = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same", name="images")(x)
    return keras.Model(z, images, name="decoder")


def deterministic_encoder(encoder: keras.Model) -> keras.Model:
    """The encoder without its sampling step: ``images -> {z_mean, z_log_var}``.

    What gets exported: a served encoder must answer the same thing twice.
    """
    return keras.Model(
        encoder.inputs[0],
        {"z_mean": encoder.get_layer("z_mean").output, "z_log_var": encoder.get_layer("z_log_var").output},
        name="encoder_deterministic",
    )


class VAE(keras.Model):
    """Encoder + decoder trained end to end with a custom ``train_step``."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        # Listed here so Keras resets them at the start of every epoch.
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def call(self, inputs):
        _, _, z = self.encoder(inputs)
        return self.decoder(z)

    def compute_losses(self, images) -> tuple[tf.Tensor, tf.Tensor]:
        """(reconstruction, kl) for one batch, both averaged over the batch."""
        z_mean, z_log_var, z = self.encoder(images)
        reconstruction = self.decoder(z)
        # binary_crossentropy averages over the last (channel) axis; the mean over
        # the 28x28 pixels times 784 is the per-image sum, as in the seed.
        reconstruction_loss = _PIXELS * ops.mean(keras.losses.binary_crossentropy(images, reconstruction))
        kl = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        kl_loss = ops.mean(ops.sum(kl, axis=1))
        return reconstruction_loss, kl_loss

    def _record(self, reconstruction_loss, kl_loss) -> dict[str, tf.Tensor]:
        self.total_loss_tracker.update_state(reconstruction_loss + kl_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            reconstruction_loss, kl_loss = self.compute_losses(images)
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._record(reconstruction_loss, kl_loss)

    def test_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._record(*self.compute_losses(images))


def build(name: str, config: VAEConfig | None = None) -> VAE:
    """A compiled VAE for ``name`` (``vae2`` or ``vae4``)."""
    config = config or CONFIGS[name]
    model = VAE(build_encoder(config), build_decoder(config), name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate))
    return model

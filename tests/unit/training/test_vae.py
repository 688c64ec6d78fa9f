from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
vae = pytest.importorskip("training.vae")

from training import data  # noqa: E402


@pytest.mark.parametrize(("name", "latent", "filters", "dense"), [("vae2", 2, (32, 64), 16), ("vae4", 4, (64, 128), 32)])
def test_configs_follow_the_seed(name, latent, filters, dense):
    config = vae.CONFIGS[name]
    assert (config.latent_dim, config.filters, config.dense_units) == (latent, filters, dense)
    assert len(config.base_vector()) == latent


def test_vae4_manifold_is_drawn_at_z_1_0_x_y():
    config = vae.CONFIGS["vae4"]
    assert config.manifold_dims == (2, 3) and config.base_vector()[:2] == [1.0, 0.0]


@pytest.mark.parametrize("name", ["vae2", "vae4"])
def test_encoder_and_decoder_shapes(name):
    config = vae.CONFIGS[name]
    encoder, decoder = vae.build_encoder(config), vae.build_decoder(config)
    assert tuple(encoder.input.shape) == (None, 28, 28, 1)
    assert [tuple(t.shape) for t in encoder.outputs] == [(None, config.latent_dim)] * 3
    assert tuple(decoder.input.shape) == (None, config.latent_dim)
    assert tuple(decoder.output.shape) == (None, 28, 28, 1)
    images = keras.ops.convert_to_numpy(decoder(np.zeros((3, config.latent_dim), np.float32)))
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_exported_encoder_is_deterministic():
    encoder = vae.build_encoder(vae.CONFIGS["vae2"])
    deterministic = vae.deterministic_encoder(encoder)
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    first, second = deterministic(x), deterministic(x)
    assert set(first) == {"z_mean", "z_log_var"}
    for key in first:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(first[key]), keras.ops.convert_to_numpy(second[key]))
    # The sample z, by contrast, is random.
    z1, z2 = encoder(x)[2], encoder(x)[2]
    assert not np.allclose(keras.ops.convert_to_numpy(z1), keras.ops.convert_to_numpy(z2))


def test_metrics_property_lists_the_three_losses():
    model = vae.build("vae2")
    assert [m.name for m in model.metrics] == ["loss", "reconstruction_loss", "kl_loss"]


@pytest.mark.slow
def test_train_steps_lower_the_loss(datasets_dir):
    keras.utils.set_random_seed(0)
    split = data.load("fashion-mnist", datasets_dir, seed=0, limit=128, test_limit=0)
    x = data.to_float(split.x_train)[..., None]
    model = vae.build("vae2")

    def loss() -> float:
        reconstruction, kl = model.compute_losses(x)
        assert float(reconstruction) > 0 and float(kl) >= 0
        return float(reconstruction + kl)

    before = loss()
    for _ in range(15):
        model.train_on_batch(x)
    assert loss() < 0.95 * before


def test_reconstruction_loss_is_784_times_the_mean_bce():
    model = vae.build("vae2")
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    reconstruction, _ = model.compute_losses(x)
    # Any prediction p of a 0.5 target costs at least BCE(0.5, 0.5) = ln 2 per pixel.
    assert float(reconstruction) >= 784 * np.log(2) - 1e-3

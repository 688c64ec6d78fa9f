from __future__ import annotations

import numpy as np
import pytest

from training.catalog import CLASSIFIERS

keras = pytest.importorskip("keras")
classifiers = pytest.importorskip("training.classifiers")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)


def test_registry_has_one_builder_per_public_name():
    assert tuple(classifiers.BUILDERS) == CLASSIFIERS
    assert set(classifiers.CONFIGS) == set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builder_shapes_and_free_batch_size(name, images):
    keras.utils.set_random_seed(0)
    model = classifiers.build(name)
    assert tuple(model.input.shape) == (None, 28, 28)
    assert tuple(model.output.shape) == (None, 10)

    full = keras.ops.convert_to_numpy(model(images, training=False))
    assert full.shape == (64, 10)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-5)
    # Zero initial state: a row's prediction depends on that image only,
    # whatever the batch size, and repeats exactly.
    for batch in (1, 7):
        part = keras.ops.convert_to_numpy(model(images[:batch], training=False))
        np.testing.assert_allclose(part, full[:batch], atol=1e-6)
    again = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_array_equal(again, full)


@pytest.mark.parametrize("name", ["lstm-cell", "dense-rnn", "gated-rnn", "custom-lstm"])
def test_hand_looped_models_survive_save_and_load(name, images, tmp_path):
    keras.utils.set_random_seed(0)
    model = classifiers.build(name)
    expected = keras.ops.convert_to_numpy(model(images[:7]))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images[:7])), expected, atol=1e-7)


def test_custom_lstm_cell_follows_the_lstm_equations():
    cell = classifiers.CustomLSTMCell(3)
    x = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    h0 = np.random.default_rng(2).random((2, 3), dtype=np.float32)
    c0 = np.random.default_rng(3).random((2, 3), dtype=np.float32)
    h, (h_state, c) = cell(x, [h0, c0])

    def dense(layer, act):
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
        return act(np.concatenate([h0, x], axis=1) @ kernel + bias)

    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    f, i, o = (dense(g, sigmoid) for g in (cell.forget_gate, cell.input_gate, cell.output_gate))
    c_expected = f * c0 + i * dense(cell.candidate, np.tanh)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(c), c_expected, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(h), o * np.tanh(c_expected), atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(h), keras.ops.convert_to_numpy(h_state))


def test_gated_cell_is_the_seed_formula():
    cell = classifiers.GatedCell(3)
    x = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    h0 = np.random.default_rng(2).random((2, 3), dtype=np.float32)
    h, _ = cell(x, [h0])

    def dense(layer, inputs, act):
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
        return act(inputs @ kernel + bias)

    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    hx = np.concatenate([h0, x], axis=1)
    z, r = dense(cell.update_gate, hx, sigmoid), dense(cell.reset_gate, hx, sigmoid)
    candidate = dense(cell.candidate, np.concatenate([r * h0, x], axis=1), np.tanh)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(h), (1 - z) * h0 + z * candidate, atol=1e-6)


def test_compile_clips_gradients():
    config = classifiers.ClassifierConfig(optimizer="rmsprop", learning_rate=0.01, clipnorm=0.5)
    model = classifiers.compile_classifier(classifiers.build("dense-rnn", config), config)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert model.optimizer.clipnorm == 0.5

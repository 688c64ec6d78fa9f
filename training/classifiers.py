"""The seven recurrent MNIST classifiers (seed 000), one builder each.

Every model reads an image as a sequence of 28 rows of 28 pixels
(``images`` ``[batch, 28, 28]`` float32 in [0, 1]) and ends in a 10-way softmax.
The hand-looped models start from a zero state: the seed's
``tf.random.normal([32, 128])`` fixed the batch size to 32 and made every
prediction random, which no server can use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers, ops

from training.catalog import CLASSIFIERS, IMAGE_SIDE, NUM_CLASSES

_PACKAGE = "training"


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of one classifier."""

    units: int = 128
    optimizer: str = "adam"  # "adam" | "rmsprop"
    learning_rate: float = 1e-3
    # Cosine decay to zero over the whole run: the last epochs fine-tune
    # instead of bouncing around at the peak rate.
    cosine_decay: bool = True
    # relu recurrences can blow up; clipping the gradient norm keeps them trainable.
    clipnorm: float = 1.0


def _state_sizes(cell: layers.Layer) -> list[int]:
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Unrolled(layers.Layer):
    """Calls a recurrent cell once per image row in a Python loop, from a zero state.

    The cell follows the Keras protocol ``cell(row, states) -> (output, new_states)``
    and has a ``state_size``. Returns the output of the last step.
    """

    def __init__(self, cell: layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell

    def build(self, input_shape):
        # A cell restored by load_model arrives already built.
        if not self.cell.built:
            self.cell.build((input_shape[0], input_shape[-1]))

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        states = [ops.zeros((batch, size), dtype=inputs.dtype) for size in _state_sizes(self.cell)]
        output = None
        for t in range(inputs.shape[1]):
            output, states = self.cell(inputs[:, t, :], states)
            states = list(states) if isinstance(states, (list, tuple)) else [states]
        return output

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _state_sizes(self.cell)[0])

    def get_config(self):
        return {**super().get_config(), "cell": keras.saving.serialize_keras_object(self.cell)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)


class _Cell(layers.Layer):
    """Base for the hand-written cells: ``units`` wide, one state tensor."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def _build_dense(self, input_shape, *dense_layers: layers.Layer) -> None:
        # Every gate reads concat(state, row).
        for dense in dense_layers:
            dense.build((input_shape[0], self.units + input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DenseCell(_Cell):
    """Zadanie 4: ``h = relu(W [h, x] + b)``."""

    def __init__(self, units: int, **kwargs):
        super().__init__(units, **kwargs)
        self.dense = layers.Dense(units, activation="relu", name="dense")

    def build(self, input_shape):
        self._build_dense(input_shape, self.dense)

    def call(self, inputs, states):
        h = self.dense(ops.concatenate([states[0], inputs], axis=-1))
        return h, [h]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GatedCell(_Cell):
    """Zadanie 5 as written in the seed: update gate z, reset gate r, tanh candidate.

    ``h = (1 - z) * h + z * tanh(W [r * h, x])`` -- a GRU without the separate
    input/recurrent kernels.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(units, **kwargs)
        self.update_gate = layers.Dense(units, activation="sigmoid", name="update_gate")
        self.reset_gate = layers.Dense(units, activation="sigmoid", name="reset_gate")
        self.candidate = layers.Dense(units, activation="tanh", name="candidate")

    def build(self, input_shape):
        self._build_dense(input_shape, self.update_gate, self.reset_gate, self.candidate)

    def call(self, inputs, states):
        h = states[0]
        hx = ops.concatenate([h, inputs], axis=-1)
        z = self.update_gate(hx)
        r = self.reset_gate(hx)
        candidate = self.candidate(ops.concatenate([r * h, inputs], axis=-1))
        h = (1.0 - z) * h + z * candidate
        return h, [h]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CustomLSTMCell(_Cell):
    """An LSTM cell from Dense layers (colah's notation), state ``[h, c]``.

    ``f, i, o = sigmoid(W [h, x])``, ``c~ = tanh(W [h, x])``,
    ``c = f * c + i * c~``, ``h = o * tanh(c)``.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(units, **kwargs)
        self.state_size = [units, units]
        # A forget bias of 1 lets the cell remember from the first step
        # (Jozefowicz et al. 2015; Keras' unit_forget_bias).
        self.forget_gate = layers.Dense(units, activation="sigmoid", bias_initializer="ones", name="forget_gate")
        self.input_gate = layers.Dense(units, activation="sigmoid", name="input_gate")
        self.output_gate = layers.Dense(units, activation="sigmoid", name="output_gate")
        self.candidate = layers.Dense(units, activation="tanh", name="candidate")

    def build(self, input_shape):
        self._build_dense(input_shape, self.forget_gate, self.input_gate, self.output_gate, self.candidate)

    def call(self, inputs, states):
        h, c = states
        hx = ops.concatenate([h, inputs], axis=-1)
        c = self.forget_gate(hx) * c + self.input_gate(hx) * self.candidate(hx)
        h = self.output_gate(hx) * ops.tanh(c)
        return h, [h, c]


def _classifier(name: str, body: Callable[[keras.KerasTensor], keras.KerasTensor]) -> keras.Model:
    images = keras.Input((IMAGE_SIDE, IMAGE_SIDE), name="images")
    probabilities = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(body(images))
    return keras.Model(images, probabilities, name=name.replace("-", "_"))


def build_lstm(config: ClassifierConfig) -> keras.Model:
    """The seed's example: LSTM(128, relu) -> Dense(10, softmax)."""
    return _classifier("lstm", layers.LSTM(config.units, activation="relu", name="lstm"))


def build_stacked_lstm(config: ClassifierConfig) -> keras.Model:
    """Zadanie 1: two LSTM(128, relu) layers."""

    def body(x):
        x = layers.LSTM(config.units, activation="relu", return_sequences=True, name="lstm_1")(x)
        return layers.LSTM(config.units, activation="relu", name="lstm_2")(x)

    return _classifier("stacked-lstm", body)


def build_simple_rnn_cell(config: ClassifierConfig) -> keras.Model:
    """Zadanie 2: SimpleRNNCell(128, relu) called row by row."""
    cell = layers.SimpleRNNCell(config.units, activation="relu", name="simple_rnn_cell")
    return _classifier("simple-rnn-cell", Unrolled(cell, name="unrolled"))


def build_lstm_cell(config: ClassifierConfig) -> keras.Model:
    """Zadanie 3: LSTMCell(128, relu) called row by row."""
    cell = layers.LSTMCell(config.units, activation="relu", name="lstm_cell")
    return _classifier("lstm-cell", Unrolled(cell, name="unrolled"))


def build_dense_rnn(config: ClassifierConfig) -> keras.Model:
    """Zadanie 4: concat(state, row) -> Dense(128, relu), row by row."""
    return _classifier("dense-rnn", Unrolled(DenseCell(config.units, name="dense_cell"), name="unrolled"))


def build_gated_rnn(config: ClassifierConfig) -> keras.Model:
    """Zadanie 5 as the seed wrote it: update/reset gates and a candidate."""
    return _classifier("gated-rnn", Unrolled(GatedCell(config.units, name="gated_cell"), name="unrolled"))


def build_custom_lstm(config: ClassifierConfig) -> keras.Model:
    """A from-scratch LSTM cell (forget/input/output gates, cell state)."""
    return _classifier("custom-lstm", Unrolled(CustomLSTMCell(config.units, name="lstm_cell"), name="unrolled"))


BUILDERS: dict[str, Callable[[ClassifierConfig], keras.Model]] = {
    "lstm": build_lstm,
    "stacked-lstm": build_stacked_lstm,
    "simple-rnn-cell": build_simple_rnn_cell,
    "lstm-cell": build_lstm_cell,
    "dense-rnn": build_dense_rnn,
    "gated-rnn": build_gated_rnn,
    "custom-lstm": build_custom_lstm,
}

CONFIGS: dict[str, ClassifierConfig] = {name: ClassifierConfig() for name in CLASSIFIERS}


def build(name: str, config: ClassifierConfig | None = None) -> keras.Model:
    """Build the (uncompiled) classifier ``name``."""
    return BUILDERS[name](config or CONFIGS[name])


def compile_classifier(model: keras.Model, config: ClassifierConfig, total_steps: int | None = None) -> keras.Model:
    """Compile with the configured optimizer, sparse cross-entropy and accuracy.

    ``total_steps`` (optimizer steps of the whole run) enables the cosine decay.
    """
    learning_rate = config.learning_rate
    if config.cosine_decay and total_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    optimizer = optimizers[config.optimizer](learning_rate=learning_rate, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

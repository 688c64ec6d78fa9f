"""The data plane without a server: model resolution, the input rules, outputs and parameters."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from contract.errors import InvalidInput, ModelNotFound, PayloadTooLarge, VersionNotFound
from serving.core import kinds
from serving.core.dataplane import DataPlane, classification
from serving.core.request import InferRequest, Output, Tensor, one_of, version_text
from tests.unit.serving.fakes import CLASSIFIER, DECODER, ENCODER, PLANE


def test_models_are_found_by_store_or_public_name_version_and_kind():
    assert PLANE.model("mnist-lstm") is CLASSIFIER
    assert PLANE.model("lstm", "1700000000") is CLASSIFIER
    assert PLANE.model("lstm", "abc") is CLASSIFIER  # the store tag works too
    assert PLANE.model("vae2") is DECODER  # a shared public name means the decoder...
    assert PLANE.model("vae2", None, kinds.Encoder) is ENCODER  # ...unless the route serves encoders
    assert PLANE.model(None, None, kinds.Encoder) is ENCODER  # an encoder's default: the default decoder's VAE
    assert PLANE.model(None, None, kinds.Classifier) is CLASSIFIER
    with pytest.raises(VersionNotFound, match="serving 1700000000"):
        PLANE.model("lstm", "2")
    with pytest.raises(ModelNotFound):
        PLANE.model("gru")


def test_a_model_of_another_kind_is_a_400_that_lists_the_right_ones():
    with pytest.raises(InvalidInput, match=r"model 'lstm' is a classifier, not an encoder; encoders: vae2"):
        PLANE.model("lstm", None, kinds.Encoder)
    with pytest.raises(InvalidInput, match="is a decoder, not a classifier"):
        PLANE.model("vae2", None, kinds.Classifier)


def test_kinds_declare_their_limits():
    settings = PLANE.settings
    assert CLASSIFIER.kind is kinds.Classifier and DECODER.kind is kinds.Decoder and ENCODER.kind is kinds.Encoder
    assert kinds.Classifier.row_limit(settings, bulk=True) == settings.max_bulk_images
    assert kinds.Decoder.row_limit(settings) == settings.max_generate_n
    assert kinds.Classifier.pixels and kinds.Encoder.pixels and not kinds.Decoder.pixels
    assert kinds.Ensemble.has_members and issubclass(kinds.Ensemble, kinds.Classifier)


def rows(model: str, tensor: Tensor, **kw) -> np.ndarray:
    return PLANE.prepare(InferRequest([tensor], model, **kw))[1]


def test_uint8_pixels_are_scaled_and_fp32_pixels_taken_as_they_are():
    np.testing.assert_allclose(rows("lstm", Tensor.of(np.full((1, 28, 28), 255, np.uint8)))[0, 0, :2], [1.0, 1.0])
    json_ints = Tensor.of(np.full((2, 28, 28), 51, np.int64), datatype="UINT8")  # JSON integers, declared pixels
    np.testing.assert_allclose(rows("lstm", json_ints)[1, 1, 1], 0.2)
    arr = np.full((1, 28, 28), 0.5, np.float32)
    assert rows("lstm", Tensor.of(arr)) is not None
    out = rows("vae2", Tensor.of(np.array([1e6, -1e6], np.float32)))  # one point without its batch axis, no range
    assert out.shape == (1, 2)


def test_one_row_and_the_channel_axis_may_be_left_out():
    assert rows("lstm", Tensor.of(np.zeros((28, 28), np.float32))).shape == (1, 28, 28)
    assert rows("fashion-vae2-encoder", Tensor.of(np.zeros((3, 28, 28), np.uint8))).shape == (3, 28, 28, 1)
    assert rows("fashion-vae2-encoder", Tensor.of(np.zeros((28, 28), np.uint8))).shape == (1, 28, 28, 1)


# One table: every mistake, its error class and the message every protocol shows for it.
MISTAKES = [
    (
        "lstm",
        Tensor("pixels", "FP32", (1, 28, 28), np.zeros((1, 28, 28))),
        InvalidInput,
        "model mnist-lstm has no input 'pixels'; its input is 'images'",
    ),
    (
        "lstm",
        Tensor.of(np.zeros((1, 28, 28), np.float64)),
        InvalidInput,
        "takes datatype UINT8 (pixels 0..255) or FP32 in [0, 1], got FP64",
    ),
    ("lstm", Tensor.of(np.zeros((1, 28, 28), np.int64)), InvalidInput, "got INT64"),
    ("vae2", Tensor.of(np.zeros((1, 2), np.uint8)), InvalidInput, "input 'z' of model fashion-vae2-decoder takes datatype FP32, got UINT8"),
    ("lstm", Tensor.of(np.zeros((1, 784), np.float32)), InvalidInput, "must have shape N x 28 x 28, got 1 x 784"),
    ("lstm", Tensor("images", "FP32", (1, -28, 28), np.zeros(1)), InvalidInput, "shape must be a list of non-negative integers"),
    ("lstm", Tensor.of(np.zeros((0, 28, 28), np.float32)), InvalidInput, "must hold at least one row"),
    (
        "lstm",
        Tensor("images", "FP32", (257, 28, 28), np.zeros(1)),
        PayloadTooLarge,
        "at most 256 images per request for model mnist-lstm, got 257",
    ),
    ("vae2", Tensor("z", "FP32", (257, 2), np.zeros(1)), PayloadTooLarge, "at most 256 latent points per request"),
    (
        "lstm",
        Tensor.of(np.full((1, 28, 28), 300, np.int64), datatype="UINT8"),
        InvalidInput,
        "is UINT8: its values must be within 0..255, got min 300",
    ),
    ("lstm", Tensor.of(np.full((1, 28, 28), 2.0, np.float32)), InvalidInput, "values must be within [0, 1], got min 2 and max 2"),
    ("vae2", Tensor.of(np.array([[np.nan, 0.0]], np.float32)), InvalidInput, "contains 1 non-finite value(s)"),
    ("lstm", Tensor("images", "FP32", (2, 28, 28), np.zeros(28 * 28)), InvalidInput, "holds 1568 elements, but 784 were sent"),
]


@pytest.mark.parametrize(("model", "tensor", "error", "message"), MISTAKES)
def test_every_mistake_has_one_error(model, tensor, error, message):
    with pytest.raises(error) as info:
        rows(model, tensor)
    assert message in str(info.value)


def test_values_are_decoded_only_after_the_header_passed():
    calls = []

    def decode() -> np.ndarray:
        calls.append(1)
        return np.zeros((1, 28, 28), np.float32)

    with pytest.raises(PayloadTooLarge):
        rows("lstm", Tensor("images", "FP32", (10**9, 28, 28), decode))
    assert not calls
    rows("lstm", Tensor("images", "FP32", (1, 28, 28), decode))
    assert calls == [1]


def test_outputs_and_parameters_are_checked():
    ok = Tensor.of(np.zeros((1, 28, 28), np.float32))
    # A classifier's own output; the verdict's (confidence, digit, reason) too where the front asks (/v1) or when named
    assert PLANE.prepare(InferRequest([ok], "lstm"))[2] == [Output("probabilities")]
    everything = [Output(n) for n in ("probabilities", "confidence", "digit", "reason")]
    assert PLANE.prepare(InferRequest([ok], "lstm", verdict=True))[2] == everything
    assert PLANE.prepare(InferRequest([ok], "lstm", outputs=[Output("digit")]))[2] == [Output("digit")]
    with pytest.raises(InvalidInput, match="classification parameter"):
        PLANE.prepare(InferRequest([ok], "lstm", outputs=[Output("confidence", classes=2)]))
    z = Tensor.of(np.zeros((1, 2), np.float32))
    assert PLANE.prepare(InferRequest([z], "vae2"))[2] == [Output("images")]  # no verdict for a decoder
    with pytest.raises(InvalidInput, match="has no output"):
        PLANE.prepare(InferRequest([ok], "lstm", outputs=[Output("logits")]))
    with pytest.raises(InvalidInput, match="classification parameter"):
        PLANE.prepare(InferRequest([Tensor.of(np.zeros((1, 2), np.float32))], "vae2", outputs=[Output("images", classes=2)]))
    with pytest.raises(InvalidInput, match="needs model=ensemble"):
        PLANE.prepare(InferRequest([ok], "lstm", members=True))
    with pytest.raises(InvalidInput, match="takes one input"):
        PLANE.prepare(InferRequest([ok, ok], "lstm"))


def test_classification_extension():
    probs = np.array([[0.1, 0.7, 0.2] + [0.0] * 7], np.float32)
    top = classification(CLASSIFIER, probs, 2)
    assert top.tolist() == [[b"0.700000:1:1", b"0.200000:2:2"]]


def test_query_and_body_must_agree_and_versions_may_be_numbers():
    assert one_of("model", None, "lstm") == "lstm" and one_of("model", "lstm", "lstm") == "lstm"
    with pytest.raises(InvalidInput, match="given twice with different values"):
        one_of("model", "lstm", "gated-rnn")
    assert version_text(1700000000) == "1700000000" and version_text(None) is None
    with pytest.raises(InvalidInput):
        version_text(True)


def test_infer_runs_on_the_engine(monkeypatch):
    async def fake_infer(rt, batch):
        return [np.tile(np.eye(10, dtype=np.float32)[3], (len(batch), 1))]

    plane = DataPlane(PLANE.engine)
    monkeypatch.setattr(plane.engine, "infer", fake_infer)
    answer = asyncio.run(
        plane.infer(InferRequest([Tensor.of(np.zeros((2, 28, 28), np.uint8))], "lstm", outputs=[Output("probabilities", classes=1)]))
    )
    assert answer.model is CLASSIFIER and answer.outputs["probabilities"].tolist() == [[b"1.000000:3:3"]] * 2

"""Model kinds as types: what each kind of served model accepts, answers and is limited to.

A stored model's ``signature.json`` says its task (``classification``, ``generation``, ``encoding``)
and its tensors; the kind adds what the service decides about every model of that task, once:
whether its input is pixels (UINT8 0..255 scaled to [0, 1], or FP32 already in [0, 1]), whether a
request may leave the model out (the kind's default model), how many rows one request may carry,
and how many rows one direct-path call runs. An ensemble is a classifier computed by its members.

To add a kind: one subclass here, and its task name in :data:`KINDS`.
"""

from __future__ import annotations

from typing import ClassVar

from serving.settings import Settings


class ModelKind:
    """What every model of one task accepts and answers (class attributes; kinds are never instantiated)."""

    name: ClassVar[str]
    task: ClassVar[str]
    # The input is pixels: UINT8 0..255 (divided by 255) or FP32 in [0, 1]; otherwise FP32 only.
    pixels: ClassVar[bool] = False
    # Its models can be their task's default (what /v1/models and the v2 config mark as "default").
    has_default: ClassVar[bool] = True
    # A request that names no model goes to the default model of this task (None: a name is needed).
    default_task: ClassVar[str | None] = None
    # Its first output is class probabilities: Triton's classification extension applies.
    classifies: ClassVar[bool] = False
    # Its answer may list each member's answer (``members``).
    has_members: ClassVar[bool] = False
    # Rows per ONNX Runtime call for requests that already are batches. ORT's arena keeps its peak
    # for the life of the session, so chunks are sized for memory as much as speed (measured on the
    # test store, 2 cores): the LSTM runs 60k images/s at 256 rows (+33 MB arena) and 56k at 1,024
    # (+137 MB); both decoders render the 30x30 manifold as fast in chunks of 16 rows (+17 MB) as of 64 (+77 MB).
    chunk_rows: ClassVar[int] = 256
    # What one row of its input is called in messages ("images", "latent points").
    rows: ClassVar[str]

    @classmethod
    def row_limit(cls, settings: Settings, bulk: bool = False) -> int:
        """The most rows one request may carry (``bulk``: the bulk .npy route, on the direct path)."""
        return settings.max_images_per_request


class Classifier(ModelKind):
    name = "classifier"
    task = "classification"
    default_task = "classification"
    pixels = True
    classifies = True
    rows = "images"

    @classmethod
    def row_limit(cls, settings: Settings, bulk: bool = False) -> int:
        return settings.max_bulk_images if bulk else settings.max_images_per_request


class Ensemble(Classifier):
    """A classifier whose answer is the mean of its members' answers; it costs its members' compute,
    so it is the default classifier only when SERVING_DEFAULT_CLASSIFIER names it."""

    name = "ensemble"
    has_members = True


class Decoder(ModelKind):
    name = "decoder"
    task = "generation"
    default_task = "generation"
    chunk_rows = 16
    rows = "latent points"

    @classmethod
    def row_limit(cls, settings: Settings, bulk: bool = False) -> int:
        return settings.max_generate_n


class Encoder(ModelKind):
    name = "encoder"
    task = "encoding"
    pixels = True
    has_default = False  # an encoder is asked for through its VAE's name (vae2)...
    default_task = "generation"  # ...and with none, the default decoder's VAE
    rows = "images"


# Task (signature.json) -> kind; an ensemble is told apart by its stored metadata (no model file).
KINDS: dict[str, type[ModelKind]] = {k.task: k for k in (Classifier, Decoder, Encoder)}
# Public names are looked up in this order when a name is shared (vae2: the decoder before the encoder).
TASKS = tuple(KINDS)


def kind_of(task: str, ensemble: bool = False) -> type[ModelKind]:
    if ensemble:
        return Ensemble
    try:
        return KINDS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r} in signature.json; known: {', '.join(KINDS)}") from None

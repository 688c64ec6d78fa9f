"""Public model names and the store entries each one becomes (see docs/CONTRACTS.md)."""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFIERS = (
    "lstm",
    "stacked-lstm",
    "simple-rnn-cell",
    "lstm-cell",
    "dense-rnn",
    "gated-rnn",
    "custom-lstm",
)
VAES = ("vae2", "vae4")
# The mean of the seven classifiers' probabilities: evaluated at build time from their runs, stored
# without a model file of its own (serving runs the members).
ENSEMBLE = "ensemble"
TRAINABLE = CLASSIFIERS + VAES
ALL_MODELS = TRAINABLE + (ENSEMBLE,)

DIGIT_LABELS = [str(d) for d in range(10)]
FASHION_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGE_SIDE = 28
NUM_CLASSES = 10


@dataclass(frozen=True)
class StoreEntry:
    """One BentoML model that a public model name is exported as."""

    store_name: str
    public_name: str
    task: str  # "classification" | "generation" | "encoding"
    dataset: str  # "mnist" | "fashion-mnist"
    part: str  # "classifier" | "decoder" | "encoder": which Keras model is exported; "ensemble": none


def dataset_of(name: str) -> str:
    """The dataset a public model name trains on."""
    return "mnist" if name in CLASSIFIERS or name == ENSEMBLE else "fashion-mnist"


def store_entries(name: str) -> list[StoreEntry]:
    """The store entries exported for one public model name."""
    if name in CLASSIFIERS:
        return [StoreEntry(f"mnist-{name}", name, "classification", "mnist", "classifier")]
    if name in VAES:
        return [
            StoreEntry(f"fashion-{name}-decoder", name, "generation", "fashion-mnist", "decoder"),
            StoreEntry(f"fashion-{name}-encoder", name, "encoding", "fashion-mnist", "encoder"),
        ]
    if name == ENSEMBLE:
        return [StoreEntry("mnist-ensemble", name, "classification", "mnist", "ensemble")]
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(ALL_MODELS)} or 'all'")


def resolve_models(spec: str) -> list[str]:
    """Turn a ``--model`` value (a name, ``all``, or comma-separated names) into names."""
    if spec == "all":
        return list(ALL_MODELS)
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in ALL_MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model {', '.join(map(repr, unknown)) or repr(spec)}; expected one of {', '.join(ALL_MODELS)} or 'all'")
    return names

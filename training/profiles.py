"""Build profiles: how long each model trains and on how much data."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.catalog import ENSEMBLE, TRAINABLE, VAES


@dataclass(frozen=True)
class Profile:
    """Epochs and batch size per model, and data limits, for one kind of build."""

    name: str
    epochs: dict[str, int] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    limit: int | None = None  # training images; None = all
    test_limit: int | None = None  # test images; None = all (parity needs >= 256)
    seed: int = 1337
    # Classifiers: random distortions of the training batches (training.augment), for uploaded digits.
    augment: bool = False
    # Classifiers: training-file images held out to fit the temperature on (training.data.validation_size):
    # this share of the training images, at least min_validation where available.
    validation: float = 0.1
    min_validation: int = 500
    # Classifiers: typeset digits (training.fonts, fonts the upload benchmark never uses) added to the
    # training images, as this share of their count.
    font_digits: float = 0.0

    def epochs_for(self, model: str) -> int:
        """Epochs for ``model`` in this profile (0 for the ensemble, which is evaluated, not fitted)."""
        return 0 if model == ENSEMBLE else self.epochs[model]

    def batch_size_for(self, model: str) -> int:
        """Training batch size for ``model`` in this profile (0 for the ensemble)."""
        return 0 if model == ENSEMBLE else self.batch_size[model]


def _table(classifiers: int, vae: int, **overrides: int) -> dict[str, int]:
    """One value for the classifiers, one for the VAEs; keyword overrides per model (``stacked_lstm=...``)."""
    table = {name: (vae if name in VAES else classifiers) for name in TRAINABLE}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if name not in table:
            raise ValueError(f"unknown model {name!r} in a profile table")
        table[name] = value
    return table


PROFILES: dict[str, Profile] = {
    # `make models`: meets the accuracy bars in docs/training.md; augmented and with typeset digits, for real uploads.
    "default": Profile(
        "default",
        epochs=_table(20, 30, stacked_lstm=15, vae4=20),
        batch_size=_table(64, 128),
        augment=True,
        font_digits=0.15,
    ),
    # `make serve` on a fresh machine: every model usable in a few minutes.
    # Small batches: within a fixed time, more updates beat more images per update. No augmentation: in
    # one epoch it costs MNIST accuracy (dense-rnn 79.5% -> 69.4%); it pays off over the default's 20.
    "quick": Profile("quick", epochs=_table(1, 2), batch_size=_table(32, 32), test_limit=1000),
    # The test suite: tiny, valid artifacts for every model; no augmentation (its speed and its reading
    # of real digits are what the end-to-end tests rely on); its 500 validation images come from the
    # training images its limit leaves unused. Every classifier gets 8 short epochs
    # (~250 updates, a few seconds each) so the end-to-end tests can check that real digits, uploaded
    # or drawn in the demo page, are read as those digits by every one of them and by the ensemble.
    "test": Profile(
        "test",
        epochs=_table(8, 1),
        batch_size=_table(32, 128),
        limit=1000,
        test_limit=500,
    ),
}

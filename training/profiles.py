"""Build profiles: how long each model trains and on how much data."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.catalog import ALL_MODELS, VAES


@dataclass(frozen=True)
class Profile:
    """Epochs and batch size per model, and data limits, for one kind of build."""

    name: str
    epochs: dict[str, int] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    limit: int | None = None  # training images; None = all
    test_limit: int | None = None  # test images; None = all (parity needs >= 256)
    seed: int = 1337

    def epochs_for(self, model: str) -> int:
        """Epochs for ``model`` in this profile."""
        return self.epochs[model]

    def batch_size_for(self, model: str) -> int:
        """Training batch size for ``model`` in this profile."""
        return self.batch_size[model]


def _table(classifiers: int, vae: int, **overrides: int) -> dict[str, int]:
    """One value for the classifiers, one for the VAEs; keyword overrides per model (``stacked_lstm=...``)."""
    table = {name: (vae if name in VAES else classifiers) for name in ALL_MODELS}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if name not in table:
            raise ValueError(f"unknown model {name!r} in a profile table")
        table[name] = value
    return table


PROFILES: dict[str, Profile] = {
    # `make models`: meets the accuracy bars in docs/training.md.
    "default": Profile(
        "default",
        epochs=_table(20, 30, stacked_lstm=15, vae4=20),
        batch_size=_table(64, 128),
    ),
    # `make serve` on a fresh machine: every model usable in a few minutes.
    # Small batches: within a fixed time, more updates beat more images per update.
    "quick": Profile("quick", epochs=_table(1, 2), batch_size=_table(32, 32), test_limit=1000),
    # The test suite: tiny, valid artifacts for every model; `lstm` alone gets a few seconds more so the
    # end-to-end tests can check that uploads of real digits are read as those digits.
    "test": Profile(
        "test",
        epochs=_table(1, 1, lstm=8),
        batch_size=_table(128, 128, lstm=32),
        limit=1000,
        test_limit=500,
    ),
}

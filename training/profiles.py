"""Build profiles: how long each model trains and on how much data."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.catalog import ALL_MODELS


@dataclass(frozen=True)
class Profile:
    """Epochs per model, data limits and batch size for one kind of build."""

    name: str
    epochs: dict[str, int] = field(default_factory=dict)
    limit: int | None = None  # training images; None = all
    test_limit: int | None = None  # test images; None = all (parity needs >= 256)
    batch_size: int = 64
    seed: int = 1337

    def epochs_for(self, model: str) -> int:
        """Epochs for ``model`` in this profile."""
        return self.epochs[model]


def _epochs(classifiers: int, vae: int, **overrides: int) -> dict[str, int]:
    table = {name: (vae if name.startswith("vae") else classifiers) for name in ALL_MODELS}
    table.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return table


PROFILES: dict[str, Profile] = {
    # `make models`: meets the accuracy bars in docs/training.md.
    "default": Profile("default", epochs=_epochs(15, 30)),
    # `make serve` on a fresh machine: every model usable in a few minutes.
    "quick": Profile("quick", epochs=_epochs(1, 5), limit=4000, test_limit=1000, batch_size=128),
    # The test suite: tiny, only has to produce valid artifacts.
    "test": Profile("test", epochs=_epochs(1, 1), limit=1000, test_limit=500, batch_size=128),
}

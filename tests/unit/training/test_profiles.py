from __future__ import annotations

from training.catalog import CLASSIFIERS, ENSEMBLE, TRAINABLE
from training.profiles import PROFILES
from training.train import TrainOptions


def test_every_profile_covers_every_model():
    assert set(PROFILES) == {"default", "quick", "test"}
    for profile in PROFILES.values():
        assert set(profile.epochs) == set(TRAINABLE)
        assert all(profile.epochs_for(name) >= 1 for name in TRAINABLE)
        assert profile.epochs_for(ENSEMBLE) == 0  # evaluated from the classifiers' runs, not fitted


def test_test_profile_is_tiny_and_keeps_enough_images_for_parity():
    test = PROFILES["test"]
    assert test.limit is not None and test.limit <= 2000
    assert test.test_limit is not None and 256 <= test.test_limit <= 1000
    # One epoch for the VAEs; every classifier gets enough updates (~250) to read real digits, because the
    # e2e tests (uploads, the demo page in a browser) need every one of them and the ensemble to read them.
    assert {name: n for name, n in test.epochs.items() if n != 1} == {name: 8 for name in CLASSIFIERS}
    assert all(test.epochs[c] * test.limit <= 10_000 for c in CLASSIFIERS)  # seconds of training, not minutes


def test_default_profile_trains_longest_on_all_data():
    default, quick = PROFILES["default"], PROFILES["quick"]
    assert default.limit is None and default.test_limit is None
    assert all(default.epochs_for(n) >= quick.epochs_for(n) for n in TRAINABLE)


def test_options_take_cli_overrides_but_ignore_missing_ones():
    options = TrainOptions.from_profile(PROFILES["test"], "lstm", epochs=3, seed=None, data_dir="/d")
    assert (options.epochs, options.seed, options.data_dir) == (3, PROFILES["test"].seed, "/d")
    assert options.limit == PROFILES["test"].limit and options.profile == "test"

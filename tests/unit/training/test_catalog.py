from __future__ import annotations

import pytest

from training.catalog import ALL_MODELS, CLASSIFIERS, ENSEMBLE, TRAINABLE, dataset_of, resolve_models, store_entries


def test_store_names_follow_the_contract():
    assert [e.store_name for e in store_entries("stacked-lstm")] == ["mnist-stacked-lstm"]
    decoder, encoder = store_entries("vae4")
    assert (decoder.store_name, decoder.task) == ("fashion-vae4-decoder", "generation")
    assert decoder.dataset == "fashion-mnist"
    assert (encoder.store_name, encoder.task, encoder.dataset) == ("fashion-vae4-encoder", "encoding", "fashion-mnist")
    assert {e.task for n in CLASSIFIERS for e in store_entries(n)} == {"classification"}
    assert sum(len(store_entries(n)) for n in ALL_MODELS) == 12


def test_the_ensemble_is_a_classifier_built_after_its_members():
    (entry,) = store_entries(ENSEMBLE)
    assert (entry.store_name, entry.task, entry.dataset, entry.part) == ("mnist-ensemble", "classification", "mnist", "ensemble")
    assert dataset_of(ENSEMBLE) == "mnist"
    # `--model all` evaluates it last, from the classifiers' runs; it is not trained.
    assert ALL_MODELS[-1] == ENSEMBLE and ENSEMBLE not in TRAINABLE
    assert ALL_MODELS.index(ENSEMBLE) > max(ALL_MODELS.index(c) for c in CLASSIFIERS)


def test_resolve_models():
    assert resolve_models("all") == list(ALL_MODELS)
    assert resolve_models("lstm, vae2") == ["lstm", "vae2"]
    with pytest.raises(ValueError, match="unknown model 'gru'"):
        resolve_models("lstm,gru")
    with pytest.raises(ValueError, match="unknown model"):
        store_entries("gru")

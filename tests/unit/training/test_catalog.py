from __future__ import annotations

import pytest

from training.catalog import ALL_MODELS, CLASSIFIERS, resolve_models, store_entries


def test_store_names_follow_the_contract():
    assert [e.store_name for e in store_entries("stacked-lstm")] == ["mnist-stacked-lstm"]
    decoder, encoder = store_entries("vae4")
    assert (decoder.store_name, decoder.task) == ("fashion-vae4-decoder", "generation")
    assert decoder.dataset == "fashion-mnist"
    assert (encoder.store_name, encoder.task, encoder.dataset) == ("fashion-vae4-encoder", "encoding", "fashion-mnist")
    assert {e.task for n in CLASSIFIERS for e in store_entries(n)} == {"classification"}
    assert sum(len(store_entries(n)) for n in ALL_MODELS) == 11


def test_resolve_models():
    assert resolve_models("all") == list(ALL_MODELS)
    assert resolve_models("lstm, vae2") == ["lstm", "vae2"]
    with pytest.raises(ValueError, match="unknown model 'gru'"):
        resolve_models("lstm,gru")
    with pytest.raises(ValueError, match="unknown model"):
        store_entries("gru")

"""serving.core.versions (policies, labels, resolution) and the control overlay of serving.core.lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.store import Stored
from serving.core import versions
from serving.core.lifecycle import Control
from serving.settings import Settings


@dataclass(frozen=True)
class V:
    version: str
    version_number: int


V1, V2, V3 = V("aaa", 100), V("bbb", 200), V("ccc", 300)


@pytest.mark.parametrize(
    ("text", "picked"),
    [
        ("latest", [V3]),
        ("latest 2", [V3, V2]),
        ("LATEST 9", [V3, V2, V1]),
        ("all", [V3, V2, V1]),
        ("specific 100,ccc", [V3, V1]),
        ("specific 999", []),
    ],
)
def test_policies_select_like_tf_serving(text, picked):
    assert versions.parse_policy(text).select([V1, V3, V2]) == picked


@pytest.mark.parametrize("bad", ["", "newest", "latest 0", "latest two", "specific", "specific ,", "all 2"])
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        versions.parse_policy(bad)


def test_policies_per_model_with_a_default():
    policies = versions.parse_policies("latest; mnist-lstm=latest 2 ;fashion-vae2-decoder=all")
    assert str(versions.policy_for(policies, "mnist-lstm")) == "latest 2"
    assert str(versions.policy_for(policies, "fashion-vae2-decoder")) == "all"
    assert str(versions.policy_for(policies, "mnist-gated-rnn")) == "latest"
    assert str(versions.policy_for(versions.parse_policies("mnist-lstm=all"), "other")) == "latest"
    with pytest.raises(ValueError, match="model name"):
        versions.parse_policies("=latest")


def test_labels_parse_and_refuse_numbers():
    assert versions.parse_labels("mnist-lstm:stable=100,canary=bbb; vae:stable=7") == {
        "mnist-lstm": {"stable": "100", "canary": "bbb"},
        "vae": {"stable": "7"},
    }
    for bad in ("mnist-lstm", "mnist-lstm:stable", "mnist-lstm:123=100", ":stable=1"):
        with pytest.raises(ValueError):
            versions.parse_labels(bad)


def test_settings_check_policies_and_labels_at_start_up():
    assert Settings.from_env({"SERVING_VERSION_POLICY": "latest; mnist-lstm=latest 2"}).version_policy
    with pytest.raises(ValueError, match="SERVING_VERSION_POLICY"):
        Settings.from_env({"SERVING_VERSION_POLICY": "newest"})
    with pytest.raises(ValueError, match="SERVING_VERSION_LABELS"):
        Settings.from_env({"SERVING_VERSION_LABELS": "mnist-lstm"})


def test_resolution_numbers_tags_labels_and_the_stable_default():
    served = [V1, V2, V3]
    assert versions.resolve(served, {}, None) is V3  # newest
    assert versions.resolve(served, {"stable": "100"}, None) is V1  # the stable label wins
    assert versions.resolve(served, {"stable": "999"}, None) is V3  # a label naming nothing served: newest
    assert versions.resolve(served, {"canary": "bbb"}, "canary") is V2
    assert versions.resolve(served, {}, "200") is V2 and versions.resolve(served, {}, "aaa") is V1
    assert versions.resolve(served, {}, "999") is None and versions.resolve(served, {}, "canary") is None
    assert versions.resolve([], {}, None) is None


def _stored(name: str, version: str, created: int) -> Stored:
    return Stored(name, version, float(created), Path("/nonexistent"), {})


def test_control_loads_and_unloads_on_top_of_the_policy():
    a1, a2, b1 = _stored("a", "a1", 100), _stored("a", "a2", 200), _stored("b", "b1", 100)
    stored = {"a": [a1, a2], "b": [b1]}
    selected = {"a": [a2], "b": [b1]}
    assert Control().apply(selected, stored) == selected
    assert Control(loads=[["a", "100"]]).apply(selected, stored) == {"a": [a2, a1], "b": [b1]}
    assert Control(unloads=[["b", ""]]).apply(selected, stored) == {"a": [a2]}
    assert Control(unloads=[["a", "a2"]]).apply(selected, stored) == {"b": [b1]}
    assert Control(loads=[["a", "a1"]], unloads=[["a", "200"]]).apply(selected, stored) == {"a": [a1], "b": [b1]}


def test_loading_one_version_after_unloading_the_whole_model_serves_that_version():
    a1, a2, b1 = _stored("a", "a1", 100), _stored("a", "a2", 200), _stored("b", "b1", 100)
    stored = {"a": [a1, a2], "b": [b1]}
    selected = {"a": [a2], "b": [b1]}
    assert Control(loads=[["a", "a1"]], unloads=[["a", ""]]).apply(selected, stored) == {"a": [a1], "b": [b1]}

"""The ensemble: a stored model without a file, served as its members' calibrated, confidence-weighted answers through their own batchers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from contract.calibration import combine
from contract.errors import NotFound, Overloaded
from serving.core.engine import Engine
from serving.core.registry import Registry
from serving.core.runtime import EnsembleRuntime
from serving.settings import Settings
from tests.unit.serving.test_runtime import make_runtime

pytest.importorskip("onnx")

MEMBERS = ("mnist-a", "mnist-b", "mnist-c")


def make_ensemble(tmp_path: Path, accuracy: float = 0.99) -> tuple[EnsembleRuntime, list]:
    members = [make_runtime(tmp_path, name, 0.9 + i / 100, seed=i) for i, name in enumerate(MEMBERS)]
    folder = tmp_path / "mnist-ensemble"
    folder.mkdir()
    signature = {**members[0].signature, "name": "mnist-ensemble", "public_name": "ensemble", "members": list(MEMBERS)}
    ensemble = EnsembleRuntime(
        store_name="mnist-ensemble",
        version="e1",
        path=folder,
        signature=signature,
        providers=["CPUExecutionProvider"],
        metadata={"kind": "ensemble", "metrics": {"test_accuracy": accuracy}, "members": {m: "v1" for m in MEMBERS}},
        members=members,
    )
    return ensemble, members


def test_the_answer_combines_the_members_with_their_temperatures(tmp_path):
    ensemble, members = make_ensemble(tmp_path)
    registry = Registry([*members, ensemble])
    registry.load_all()
    assert ensemble.ready and ensemble.provider == "CPUExecutionProvider"
    x = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
    (probs,) = ensemble.predict_all(x)
    assert probs.dtype == np.float32 and probs.shape == (5, 10)
    np.testing.assert_allclose(probs, combine([m.predict(x) for m in members], [1.0] * 3), atol=1e-7)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    members[1].signature["calibration"] = {"temperature": 2.5}  # what training fitted: the member is over-confident
    assert members[1].temperature == 2.5 and members[0].temperature == 1.0
    (tempered,) = ensemble.predict_all(x)
    np.testing.assert_allclose(tempered, combine([m.predict(x) for m in members], [1.0, 2.5, 1.0]), atol=1e-7)
    assert not np.allclose(tempered, probs)
    described = ensemble.describe()
    assert [m["name"] for m in described["members"]] == ["a", "b", "c"]
    assert all(m["version"] == m["measured_version"] == "v1" for m in described["members"])


def test_the_ensemble_is_never_the_implicit_default_but_answers_to_its_public_name(tmp_path):
    ensemble, members = make_ensemble(tmp_path, accuracy=0.999)
    registry = Registry([*members, ensemble])
    registry.load_all()
    # Best stored accuracy, yet seven times the compute: a request that names no model gets the best single one.
    assert registry.default_name("classification") == "c"
    assert Registry([*members, ensemble], default_classifier="ensemble").default_name("classification") == "ensemble"
    assert registry.get("classification", "ensemble") is ensemble
    # TF-Serving clients name models by store name; the ensemble also answers to "ensemble".
    assert registry.find("mnist-ensemble") is ensemble and registry.find("ensemble") is ensemble


def test_a_model_without_recorded_evaluation_says_to_rebuild(tmp_path):
    ensemble, _ = make_ensemble(tmp_path)
    with pytest.raises(NotFound, match="rebuild"):
        ensemble.evaluation()
    (ensemble.path / "evaluation.json").write_text(json.dumps({"confusion_matrix": [[1]]}))
    assert ensemble.evaluation()["confusion_matrix"] == [[1]]


def engine_for(tmp_path: Path, **env: str) -> tuple[Engine, EnsembleRuntime, list]:
    ensemble, members = make_ensemble(tmp_path)
    engine = Engine(Settings.from_env({"SERVING_GRPC_PORT": "0", **env}), Registry([*members, ensemble]))
    engine.load()
    return engine, ensemble, members


def test_engine_runs_each_member_through_its_own_batcher_once(tmp_path):
    engine, ensemble, members = engine_for(tmp_path)
    assert {store_name for store_name, _ in engine.batchers} == set(MEMBERS)  # no batcher of its own
    calls: dict[str, int] = {}
    for (name, _), batcher in engine.batchers.items():
        run = batcher.run
        batcher.run = lambda rows, run=run, name=name: (calls.__setitem__(name, calls.get(name, 0) + 1), run(rows))[1]
    x = np.random.default_rng(4).random((3, 28, 28), dtype=np.float32)

    async def main():
        try:
            return await engine.infer(ensemble, x), await engine.infer_members(ensemble, x)
        finally:
            await engine.close()

    (probs,), (mean, answers) = asyncio.run(main())
    assert calls == {name: 2 for name in MEMBERS}  # one batch per member per request
    assert list(answers) == ["a", "b", "c"]
    np.testing.assert_allclose(probs, mean, atol=0)
    np.testing.assert_allclose(mean, combine(list(answers.values())), atol=1e-7)
    np.testing.assert_allclose(answers["b"], members[1].predict(x), atol=1e-6)
    np.testing.assert_allclose(engine.predict_direct(ensemble, x), mean, atol=1e-6)


def test_a_member_that_refuses_fails_the_request_and_cancels_the_rest(tmp_path):
    engine, ensemble, _ = engine_for(tmp_path)
    x = np.zeros((1, 28, 28), np.float32)

    async def refuse(rows):
        raise Overloaded("model mnist-b has 128 requests queued")

    engine.batchers[("mnist-b", "v1")].submit = refuse

    async def main():
        try:
            with pytest.raises(Overloaded, match="mnist-b"):
                await engine.infer(ensemble, x)
        finally:
            await engine.close()

    asyncio.run(main())

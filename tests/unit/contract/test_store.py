"""contract.store: the model store's versions, listed from a real BentoML store in a temporary BENTOML_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.store import Stored, newest

REPO = Path(__file__).resolve().parents[3]
SIGNATURE = {"name": "mnist-lstm", "inputs": [{"name": "images"}], "outputs": [{"name": "probabilities"}]}

# Registers two mnist-lstm versions and one decoder, then prints what list_store sees (BENTOML_HOME is
# read when bentoml is first imported, hence a fresh interpreter).
LIST_A_STORE = """
import json, sys
import bentoml
from contract.errors import ModelNotFound
from contract.store import list_store

for name, n in (("mnist-lstm", 1), ("mnist-lstm", 2), ("fashion-vae2-decoder", 3)):
    with bentoml.models.create(name, metadata={"n": n}) as model:
        with open(model.path_of("signature.json"), "w") as f:
            f.write(sys.argv[1].replace("mnist-lstm", name))
every = list_store()
named = list_store(["mnist-lstm"])
try:
    list_store(["mnist-gru"])
    missing = ""
except ModelNotFound as e:
    missing = str(e)
rows = lambda stored: [[s.store_name, s.version, s.created, str(s.path), s.metadata, s.tag, s.version_number] for s in stored]
print(json.dumps({"every": rows(every), "named": rows(named), "missing": missing, "signature": every[-1].signature()}))
"""


@pytest.fixture(scope="module")
def listed(tmp_path_factory) -> dict:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml")), "BENTOML_DO_NOT_TRACK": "True"}
    run = subprocess.run(
        [sys.executable, "-c", LIST_A_STORE, json.dumps(SIGNATURE)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_every_stored_version_is_listed_with_its_metadata(listed) -> None:
    rows = sorted(listed["every"], key=lambda r: r[4]["n"])
    assert [(r[0], r[4]) for r in rows] == [("mnist-lstm", {"n": 1}), ("mnist-lstm", {"n": 2}), ("fashion-vae2-decoder", {"n": 3})]
    for name, version, created, path, _, tag, number in rows:
        assert tag == f"{name}:{version}" and number == int(created)
        assert Path(path).name == version and (Path(path) / "signature.json").is_file()


def test_a_name_alone_lists_its_latest_version(listed) -> None:
    (latest,) = listed["named"]
    assert latest[4] == {"n": 2}


def test_a_tag_the_store_lacks_is_model_not_found(listed) -> None:
    assert "mnist-gru" in listed["missing"] and "bentoml models list" in listed["missing"]


def test_stored_signature_is_checked_against_its_name(listed, tmp_path) -> None:
    assert listed["signature"]["name"] in ("mnist-lstm", "fashion-vae2-decoder")
    (tmp_path / "signature.json").write_text(json.dumps(SIGNATURE))
    assert Stored("mnist-lstm", "v1", 1.0, tmp_path, {}).signature() == SIGNATURE
    with pytest.raises(ValueError, match="not 'mnist-gru'"):
        Stored("mnist-gru", "v1", 1.0, tmp_path, {}).signature()


def test_record_keys_tags_and_version_numbers() -> None:
    s = Stored("mnist-lstm", "abc", 1795541821.93, Path("/nonexistent"), {})
    assert (s.key, s.tag, s.version_number) == (("mnist-lstm", "abc"), "mnist-lstm:abc", 1795541821)


def test_newest_is_the_latest_version_of_each_name_by_name() -> None:
    old, new, other = (Stored(n, v, c, Path("/nonexistent"), {}) for n, v, c in (("b", "1", 1.0), ("b", "2", 2.0), ("a", "1", 5.0)))
    assert newest([new, other, old]) == [other, new]
    assert newest([]) == []

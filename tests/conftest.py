"""Session fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or REPO.parent / "shared" / "datasets")


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``$DATA_DIR`` if set, else the shared datasets next to the repository."""
    return _data_dir()


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> SimpleNamespace:
    """Every model built once with the ``test`` profile into a temporary BentoML store.

    ``.home`` is the BENTOML_HOME, ``.runs`` the run directories, ``.seconds`` the build time.
    ``TEST_STORE=DIR`` reuses ``DIR/bentoml`` and ``DIR/runs`` built by the same command.
    """
    reuse = os.environ.get("TEST_STORE")
    if reuse:  # a store built earlier by the same command, for quick local re-runs; CI never sets it
        root = Path(reuse)
        return SimpleNamespace(home=root / "bentoml", runs=root / "runs", log=root / "build.log", seconds=0.0)
    root = tmp_path_factory.mktemp("trained_store")
    home, runs, log = root / "bentoml", root / "runs", root / "build.log"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    command = [
        sys.executable,
        "-m",
        "training",
        "build",
        "--profile",
        "test",
        "--data-dir",
        str(_data_dir()),
        "--out",
        str(runs),
        "--quiet",
    ]
    started = time.monotonic()
    with log.open("wb") as out:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-6000:]
        pytest.fail(f"`{' '.join(command)}` exited with {result.returncode}; log {log}:\n{tail}", pytrace=False)
    return SimpleNamespace(home=home, runs=runs, log=log, seconds=time.monotonic() - started)

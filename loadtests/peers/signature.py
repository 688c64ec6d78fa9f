"""The model's ``signature.json`` as the peers need it (standard library only: both venvs import this)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 2000  # Triton's dynamic batcher: max queue delay, 2 ms


def read_signature(model_dir: str | Path) -> dict[str, Any]:
    """The model's name and its one input / first output (name, row shape) from ``signature.json``."""
    sig = json.loads((Path(model_dir) / "signature.json").read_text())
    return {
        "name": sig["name"],
        "input": sig["inputs"][0]["name"],
        "input_row_shape": tuple(int(d) for d in sig["inputs"][0]["shape"][1:]),
        "output": sig["outputs"][0]["name"],
        "output_row_shape": tuple(int(d) for d in sig["outputs"][0]["shape"][1:]),
    }

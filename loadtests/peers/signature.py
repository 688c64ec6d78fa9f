"""The model's ``signature.json`` as the peers need it: its name and its one input / first output.

Standard library only (both venvs import this): ``contract.artifacts`` reads the signature and
``contract.triton`` holds the batching every Triton configuration of ours uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.artifacts import read_signature as read_model_signature
from contract.triton import MAX_BATCH_SIZE as DEFAULT_MAX_BATCH

# The benchmark's Triton peer waits up to 2 ms for company, as in every side-by-side so far, so figures
# stay comparable across runs (an exported Triton repository uses the engine's 0: contract.triton).
DEFAULT_QUEUE_DELAY_US = 2000

# The defaults under the names ``loadtests.peers.start_triton`` imports them by.
__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUEUE_DELAY_US", "read_signature"]


def read_signature(model_dir: str | Path) -> dict[str, Any]:
    """The model's name and its one input / first output (name, row shape) from ``signature.json``."""
    sig = read_model_signature(Path(model_dir))
    return {
        "name": sig["name"],
        "input": sig["inputs"][0]["name"],
        "input_row_shape": tuple(int(d) for d in sig["inputs"][0]["shape"][1:]),
        "output": sig["outputs"][0]["name"],
        "output_row_shape": tuple(int(d) for d in sig["outputs"][0]["shape"][1:]),
    }

"""ONNX Runtime sessions for stored models: the only module that imports onnxruntime.

A stored ensemble (``kind: ensemble`` in its metadata) has no model file: :class:`EnsembleRuntime`
stands for it, over the runtimes of its members.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract import calibration
from contract.artifacts import check_model_file, version_number
from contract.errors import NotFound, NotReady

from .kinds import Ensemble, ModelKind, kind_of

logger = logging.getLogger("serving.runtime")

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def choose_providers(requested: str, available: Sequence[str]) -> list[str]:
    """ORT providers to use, best first; always ends with CPU.

    ``auto`` takes CUDA when this onnxruntime build offers it *and* a GPU driver
    is present (the GPU wheel lists CUDA even on CPU-only hosts), else CPU.
    An explicit list (``cuda,cpu``) is honoured in order; asking for a provider
    this build lacks is an error rather than a silent fallback.
    """
    if requested.strip().lower() == "auto":
        chosen = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available and _gpu_present() else []
    else:
        chosen = []
        for token in (t.strip() for t in requested.split(",") if t.strip()):
            name = PROVIDER_ALIASES.get(token.lower(), token)
            if name not in available:
                raise ValueError(f"SERVING_PROVIDERS asks for {name}, but this onnxruntime offers {list(available)}")
            if name not in chosen:
                chosen.append(name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


@dataclass
class ModelRuntime:
    """One stored model: its signature, metadata and a warmed-up ORT session."""

    store_name: str
    version: str
    path: Path
    metadata: dict[str, Any]
    signature: dict[str, Any]
    providers: list[str]
    created: float = 0.0
    intra_op_threads: int = 0
    spinning: bool = False
    session: Any = None
    provider: str | None = None
    ready: bool = False
    load_seconds: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _evaluation: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def public_name(self) -> str:
        return str(self.signature.get("public_name") or self.metadata.get("public_name") or self.store_name)

    @property
    def task(self) -> str:
        return str(self.signature["task"])

    @property
    def kind(self) -> type[ModelKind]:
        """What this model accepts and answers, and its limits (serving/core/kinds.py)."""
        return kind_of(self.task)

    @property
    def input_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.signature["inputs"][0]
        return spec

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.signature["outputs"]]

    @property
    def temperature(self) -> float:
        """The calibration temperature training fitted on held-out images (signature.json); 1.0 when none."""
        calibration = self.signature.get("calibration") or {}
        return float(calibration.get("temperature", 1.0))

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.input_spec["shape"][1:])

    @property
    def key(self) -> tuple[str, str]:
        """(store name, version): one served version."""
        return (self.store_name, self.version)

    @property
    def version_number(self) -> int:
        """TF Serving versions are integers: the registration time in seconds."""
        return version_number(self.created)

    def load(self) -> None:
        import onnxruntime as ort

        with self._lock:
            if self.ready:
                return
            started = time.perf_counter()
            model_file = check_model_file(self.path, self.metadata.get("sha256"), f"{self.store_name}:{self.version}")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self.intra_op_threads:
                options.intra_op_num_threads = self.intra_op_threads
            if not self.spinning:
                # Spinning ORT threads steal the core the event loop needs between small batches.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(model_file), sess_options=options, providers=self.providers)
            self.provider = self.session.get_providers()[0]
            self._warm_up()
            self.load_seconds = time.perf_counter() - started
            self.ready = True
            logger.info("loaded %s:%s on %s in %.2fs", self.store_name, self.version, self.provider, self.load_seconds)

    def unload(self) -> None:
        """Drop the ORT session: its memory is freed once no batch still runs on it."""
        with self._lock:
            self.session = None
            self.ready = False

    def _warm_up(self) -> None:
        # Batch 1 and a larger batch so the first real requests do not pay for allocation/plan caching.
        for n in (1, 8):
            self.predict(np.zeros((n, *self.row_shape), dtype=np.float32))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """First output for a float32 batch shaped [N, *row_shape] (already validated)."""
        return self.predict_all(batch)[0]

    def predict_all(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.session is None:
            raise NotReady(f"model {self.store_name} is not loaded yet")
        outputs: list[np.ndarray] = self.session.run(self.output_names, {self.input_spec["name"]: batch})
        return outputs

    def evaluation(self) -> dict[str, Any]:
        """What training recorded about the test set (``evaluation.json``): a confusion matrix, or latent means."""
        if self._evaluation is None:
            path = self.path / "evaluation.json"
            if not path.is_file():
                raise NotFound(
                    f"model {self.store_name}:{self.version} has no recorded test-set evaluation "
                    "(it was built before evaluations were stored); rebuild it with `python -m training build`"
                )
            self._evaluation = json.loads(path.read_text())
        return self._evaluation

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.public_name,
            "store_name": self.store_name,
            "version": self.version,
            "version_number": self.version_number,
            "task": self.task,
            "signature": self.signature,
            "metrics": self.metadata.get("metrics", {}),
            "parity_max_abs_diff": self.metadata.get("parity_max_abs_diff"),
            "training": self.metadata.get("training", {}),
            "provider": self.provider,
            "ready": self.ready,
        }


@dataclass
class EnsembleRuntime(ModelRuntime):
    """A stored ensemble: no session of its own; its answer combines its members' answers, each calibrated
    by its own temperature and weighted per image by its own calibrated confidence
    (:func:`contract.calibration.combine`, as training evaluated it).

    ``members`` are the runtimes its unversioned member names resolve to now: the registry links
    them whenever what it serves changes, so an ensemble follows its members' hot reloads. The
    engine runs each member through that member's batcher; :meth:`predict_all` (members in turn,
    in this thread) is the reference and the direct path.
    """

    members: list[ModelRuntime] = field(default_factory=list)

    @property
    def kind(self) -> type[ModelKind]:
        return Ensemble

    @property
    def member_names(self) -> list[str]:
        return list(self.signature["members"])

    def load(self) -> None:
        """Nothing to load: the members are models of their own, loaded and served as such."""
        self.provider = self.members[0].provider if self.members else None
        self.ready = True

    def combine(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """The ensemble's probabilities from its members' (in :attr:`members` order)."""
        return calibration.combine(outputs, [m.temperature for m in self.members])

    def predict_all(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self.combine([member.predict(batch) for member in self.members])]

    def describe(self) -> dict[str, Any]:
        measured = self.metadata.get("members") or {}
        return {
            **super().describe(),
            "provider": self.members[0].provider if self.members else None,
            "members": [
                {
                    "name": m.public_name,
                    "store_name": m.store_name,
                    "version": m.version,
                    "measured_version": measured.get(m.store_name) or None,
                }
                for m in self.members
            ],
        }


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())

"""ONNX Runtime sessions for stored models: the only module that imports onnxruntime.

A stored ensemble (``kind: ensemble`` in its metadata) has no model file: :class:`EnsembleRuntime`
stands for it, over the runtimes of its members.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.artifacts import file_sha256, version_number
from contract.errors import ModelIntegrityError, ModelNotFound, NotFound, NotReady, VersionNotFound

from . import versions

logger = logging.getLogger("serving.runtime")

# Every task a stored model can have; public names are looked up in this order when a name is shared.
TASKS = ("classification", "generation", "encoding")
# Tasks whose requests may name no model (they go to the task's default): never the encoders.
DEFAULT_TASKS = ("classification", "generation")

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
    def input_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.signature["inputs"][0]
        return spec

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.signature["outputs"]]

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
            model_file = self.path / "model.onnx"
            expected = self.metadata.get("sha256")
            actual = file_sha256(model_file)
            if not expected or actual != expected:
                raise ModelIntegrityError(
                    f"{self.store_name}:{self.version}: model.onnx sha256 {actual} does not match the stored {expected!r}"
                )
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


def mean_probabilities(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """An ensemble's answer: the float32 mean of its members' probabilities (as training evaluated it)."""
    return np.asarray(np.mean(np.stack(outputs), axis=0, dtype=np.float32))


@dataclass
class EnsembleRuntime(ModelRuntime):
    """A stored ensemble: no session of its own; its answer is the mean of its members' answers.

    ``members`` are the runtimes its unversioned member names resolve to now: the registry links
    them whenever what it serves changes, so an ensemble follows its members' hot reloads. The
    engine runs each member through that member's batcher; :meth:`predict_all` (members in turn,
    in this thread) is the reference and the direct path.
    """

    members: list[ModelRuntime] = field(default_factory=list)

    @property
    def member_names(self) -> list[str]:
        return list(self.signature["members"])

    def load(self) -> None:
        """Nothing to load: the members are models of their own, loaded and served as such."""
        self.provider = self.members[0].provider if self.members else None
        self.ready = True

    def predict_all(self, batch: np.ndarray) -> list[np.ndarray]:
        return [mean_probabilities([member.predict(batch) for member in self.members])]

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


class Registry:
    """Every served version of every model, addressable by public or store name and by version number, tag or label."""

    def __init__(
        self,
        runtimes: Sequence[ModelRuntime] = (),
        default_classifier: str | None = None,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._versions: dict[str, list[ModelRuntime]] = {}
        self._public: dict[tuple[str, str], str] = {}
        self.labels: dict[str, dict[str, str]] = {name: dict(pairs) for name, pairs in (labels or {}).items()}
        self._default_classifier = default_classifier
        for rt in runtimes:
            self.add(rt)

    # ------------------------------------------------------------ membership

    def add(self, rt: ModelRuntime) -> None:
        """Serve ``rt`` (replacing a runtime of the same version)."""
        served = [v for v in self._versions.get(rt.store_name, []) if v.version != rt.version]
        self._versions[rt.store_name] = [*served, rt]
        self._public[(rt.task, rt.public_name)] = rt.store_name
        self._link_ensembles()

    def remove(self, rt: ModelRuntime) -> None:
        """Stop routing requests to ``rt``."""
        served = [v for v in self._versions.get(rt.store_name, []) if v is not rt]
        if served:
            self._versions[rt.store_name] = served
        else:
            self._versions.pop(rt.store_name, None)
            self._public = {k: v for k, v in self._public.items() if v != rt.store_name}
        self._link_ensembles()

    def _link_ensembles(self) -> None:
        """Point every ensemble at the versions its members' unversioned requests go to now."""
        current = self.runtimes
        for ensemble in (rt for rt in self.served() if isinstance(rt, EnsembleRuntime)):
            ensemble.members = [current[name] for name in ensemble.member_names if name in current]
            measured = ensemble.metadata.get("members") or {}
            differ = [f"{m.store_name}:{m.version}" for m in ensemble.members if measured.get(m.store_name) not in (None, "", m.version)]
            if differ:
                logger.info("%s: its stored accuracy was measured with other member versions than %s", ensemble.store_name, differ)

    def served(self) -> list[ModelRuntime]:
        """Every served runtime, by store name then newest first."""
        return [rt for name in sorted(self._versions) for rt in sorted(self._versions[name], key=lambda r: -r.version_number)]

    def versions_of(self, store_name: str) -> list[ModelRuntime]:
        return list(self._versions.get(store_name, []))

    @property
    def runtimes(self) -> dict[str, ModelRuntime]:
        """The version each model's unversioned requests go to, by store name."""
        return {name: self._current(name) for name in sorted(self._versions)}

    def _current(self, store_name: str) -> ModelRuntime:
        chosen = versions.resolve(self._versions[store_name], self.labels.get(store_name, {}), None)
        assert isinstance(chosen, ModelRuntime)
        return chosen

    @property
    def ready(self) -> bool:
        return bool(self._versions) and all(rt.ready for rt in self.served())

    def load_all(self) -> None:
        for rt in self.served():
            rt.load()

    # ------------------------------------------------------------ lookup

    def names(self, task: str) -> list[str]:
        return sorted(rt.public_name for rt in self.runtimes.values() if rt.task == task)

    def default_name(self, task: str) -> str:
        if task == "classification" and self._default_classifier:
            return self._default_classifier
        # An ensemble costs its members' compute: it is the default only when named (SERVING_DEFAULT_CLASSIFIER).
        candidates = [rt for rt in self.runtimes.values() if rt.task == task and not isinstance(rt, EnsembleRuntime)]
        if not candidates:
            raise ModelNotFound(f"no {task} model is loaded")
        if task == "classification":
            return max(candidates, key=lambda rt: (rt.metadata.get("metrics", {}).get("test_accuracy", 0.0), rt.public_name)).public_name
        return min(candidates, key=lambda rt: rt.public_name).public_name

    def get(self, task: str, name: str | None, version: str | None = None) -> ModelRuntime:
        """Runtime for a public name (``lstm``) or a store name (``mnist-lstm``) of the given task."""
        name = name or self.default_name(task)
        store_name = self._public.get((task, name)) or name
        served = self._versions.get(store_name)
        if not served or served[0].task != task:
            raise ModelNotFound(f"unknown {task} model {name[:100]!r}; available: {', '.join(self.names(task)) or 'none'}")
        return self._pick(store_name, version)

    def find(self, name: str, version: str | None = None) -> ModelRuntime:
        """A runtime by store name, else by public name (a classifier's, then a decoder's, then an encoder's)."""
        if name not in self._versions:
            name = next((self._public[(task, name)] for task in TASKS if (task, name) in self._public), name)
        return self.by_store_name(name, version)

    def by_store_name(self, store_name: str, version: str | None = None) -> ModelRuntime:
        if store_name not in self._versions:
            raise ModelNotFound(f"unknown model {store_name[:100]!r}; available: {', '.join(sorted(self._versions)) or 'none'}")
        return self._pick(store_name, version)

    def _pick(self, store_name: str, version: str | None) -> ModelRuntime:
        served = self._versions[store_name]
        labels = self.labels.get(store_name, {})
        rt = versions.resolve(served, labels, version)
        if rt is None:
            numbers = ", ".join(str(v.version_number) for v in sorted(served, key=lambda r: -r.version_number))
            named = f"; labels {', '.join(f'{k}={v}' for k, v in sorted(labels.items()))}" if labels else ""
            raise VersionNotFound(f"model {store_name} has no version {str(version)[:100]!r}; serving {numbers}{named}")
        assert isinstance(rt, ModelRuntime)
        if not rt.ready:
            raise NotReady(f"model {store_name} version {rt.version_number} is still loading")
        if isinstance(rt, EnsembleRuntime) and len(rt.members) != len(rt.member_names):
            missing = sorted(set(rt.member_names) - {m.store_name for m in rt.members})
            raise NotReady(f"ensemble {store_name} is missing its members {missing}: they are not served")
        return rt


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())

"""ONNX Runtime sessions for stored models: the only module that imports onnxruntime.

A stored ensemble (``kind: ensemble`` in its metadata) has no model file: :class:`EnsembleRuntime`
stands for it, over the runtimes of its members.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from contract.errors import ModelIntegrityError, ModelNotFound, NotFound, NotReady, VersionNotFound

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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        return self.signature.get("public_name") or self.metadata.get("public_name") or self.store_name

    @property
    def task(self) -> str:
        return self.signature["task"]

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.signature["inputs"][0]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.signature["outputs"]]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.input_spec["shape"][1:])

    @property
    def version_number(self) -> int:
        """TF Serving versions are integers: the registration time in seconds."""
        return int(self.created)

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
        return self.session.run(self.output_names, {self.input_spec["name"]: batch})

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
    return np.mean(np.stack(outputs), axis=0, dtype=np.float32)


@dataclass
class EnsembleRuntime(ModelRuntime):
    """A stored ensemble: no session of its own; its answer is the mean of its members' answers.

    The engine runs each member through that member's batcher; :meth:`predict_all` (members
    in turn, in this thread) is the reference and the direct path.
    """

    members: list[ModelRuntime] = field(default_factory=list)

    def load(self) -> None:
        for member in self.members:
            member.load()
        measured = self.metadata.get("members") or {}
        differ = [f"{m.store_name}:{m.version}" for m in self.members if measured.get(m.store_name) not in (None, "", m.version)]
        if differ:
            logger.warning("%s: its stored accuracy was measured with other member versions than %s", self.store_name, differ)
        self.provider = self.members[0].provider
        self.ready = True

    def predict_all(self, batch: np.ndarray) -> list[np.ndarray]:
        return [mean_probabilities([member.predict(batch) for member in self.members])]

    def describe(self) -> dict[str, Any]:
        measured = self.metadata.get("members") or {}
        return {
            **super().describe(),
            "members": [
                {"name": m.public_name, "store_name": m.store_name, "version": m.version,
                 "measured_version": measured.get(m.store_name) or None}
                for m in self.members
            ],
        }


class Registry:
    """All runtimes of this server, addressable by public or store name."""

    def __init__(self, runtimes: list[ModelRuntime], default_classifier: str | None = None) -> None:
        self.runtimes = {rt.store_name: rt for rt in runtimes}
        self._by_public: dict[tuple[str, str], ModelRuntime] = {(rt.task, rt.public_name): rt for rt in runtimes}
        self._default_classifier = default_classifier

    @classmethod
    def from_store(cls, settings: Any, pinned: Sequence[str] = ()) -> Registry:
        """Runtimes for the tags in SERVING_MODELS, else ``pinned`` (a Bento's own model tags),
        else the latest version of each stored model."""
        import bentoml

        providers = choose_providers(settings.providers, _available_providers())
        tags = list(settings.models) or list(pinned)
        if tags:
            models = [bentoml.models.get(tag) for tag in tags]
        else:
            latest: dict[str, Any] = {}
            for model in bentoml.models.list():
                name = model.tag.name
                if name not in latest or model.creation_time > latest[name].creation_time:
                    latest[name] = model
            models = list(latest.values())
        runtimes: list[ModelRuntime] = []
        ensembles: list[EnsembleRuntime] = []
        for model in models:
            path = Path(model.path)
            metadata = dict(model.info.metadata)
            kind = EnsembleRuntime if metadata.get("kind") == "ensemble" else ModelRuntime
            rt = kind(
                store_name=model.tag.name,
                version=model.tag.version,
                path=path,
                metadata=metadata,
                signature=json.loads((path / "signature.json").read_text()),
                providers=providers,
                created=model.creation_time.timestamp(),
                intra_op_threads=settings.intra_op_threads,
                spinning=settings.ort_spinning,
            )
            (ensembles if isinstance(rt, EnsembleRuntime) else runtimes).append(rt)
        by_name = {rt.store_name: rt for rt in runtimes}
        for ensemble in ensembles:
            missing = [m for m in ensemble.signature["members"] if m not in by_name]
            if missing:
                logger.warning("not serving %s: its members %s are not served", ensemble.store_name, missing)
                continue
            ensemble.members = [by_name[m] for m in ensemble.signature["members"]]
            runtimes.append(ensemble)
        return cls(runtimes, settings.default_classifier)

    @property
    def ready(self) -> bool:
        return bool(self.runtimes) and all(rt.ready for rt in self.runtimes.values())

    def load_all(self) -> None:
        for rt in self.runtimes.values():
            rt.load()

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
        rt = self._by_public.get((task, name)) or self.runtimes.get(name)
        if rt is None or rt.task != task:
            raise ModelNotFound(f"unknown {task} model {name[:100]!r}; available: {', '.join(self.names(task)) or 'none'}")
        if version and version != rt.version:
            raise VersionNotFound(f"model {rt.store_name} has no version {version[:100]!r}; serving {rt.version}")
        if not rt.ready:
            raise NotReady(f"model {rt.store_name} is still loading")
        return rt

    def by_store_name(self, store_name: str) -> ModelRuntime:
        """Runtime for a store name (what gRPC clients name); an ensemble also answers to its public name."""
        rt = self.runtimes.get(store_name)
        if rt is None and isinstance(ensemble := self._by_public.get(("classification", store_name)), EnsembleRuntime):
            rt = ensemble
        if rt is None:
            raise ModelNotFound(f"unknown model {store_name[:100]!r}; available: {', '.join(sorted(self.runtimes)) or 'none'}")
        if not rt.ready:
            raise NotReady(f"model {store_name} is still loading")
        return rt


def _available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()

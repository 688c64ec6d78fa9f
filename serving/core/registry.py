"""Every served version of every model, addressable by public or store name and by version number, tag or label."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from contract.errors import ModelNotFound, NotReady, VersionNotFound

from . import versions
from .kinds import TASKS, Ensemble
from .runtime import EnsembleRuntime, ModelRuntime

logger = logging.getLogger("serving.registry")


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
        candidates = [rt for rt in self.runtimes.values() if rt.task == task and rt.kind is not Ensemble]
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
            raise self._unknown(name)
        return self._pick(store_name, version)

    def _unknown(self, name: str) -> ModelNotFound:
        """The one answer for a name no served model has, whatever asked."""
        public = sorted({rt.public_name for rt in self.runtimes.values()})
        return ModelNotFound(f"unknown model {name[:100]!r}; served: {', '.join(public) or 'none'} (or their store names, see /v1/models)")

    def find(self, name: str, version: str | None = None) -> ModelRuntime:
        """A runtime by store name, else by public name (a classifier's, then a decoder's, then an encoder's)."""
        if name not in self._versions:
            name = next((self._public[(task, name)] for task in TASKS if (task, name) in self._public), name)
        if name not in self._versions:
            raise self._unknown(name)
        return self._pick(name, version)

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

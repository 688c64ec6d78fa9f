"""Model lifecycle of one worker: which stored versions it serves, hot reload, and the control API's state.

At start-up the worker serves what the version policies select from the model store
(``serving.versions``), or exactly SERVING_MODELS / a Bento's own models. Then, every
SERVING_MODEL_POLL_S seconds, it looks at the store again: a newly selected version is loaded,
checked (sha256, signature) and warmed in the background, and only then takes traffic; a version
no longer selected leaves the routing at once, keeps SERVING_RETIRE_GRACE_S for requests that had
already chosen it, finishes its queue and is unloaded. A version that fails its checks is refused
and logged, and is not tried again; what was served keeps serving.

Workers share two kinds of files in SERVING_STATE_DIR: ``control.json``, the control API's loads,
unloads and labels (written by the worker that took the call, applied by every worker within a
second), and ``worker-<pid>.json``, what each worker serves (``GET /v1/models`` shows them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.errors import Forbidden, InvalidInput, ModelIntegrityError, ModelNotFound, VersionNotFound
from contract.store import Stored, list_store
from serving.settings import Settings

from . import versions
from .registry import Registry
from .runtime import EnsembleRuntime, ModelRuntime, available_providers, choose_providers

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger("serving.lifecycle")

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"  # Triton's repository index states
CONTROL_FILE = "control.json"


def registry_from_store(settings: Settings, pinned: Sequence[str] = ()) -> Registry:
    """What a worker would serve at start-up, loaded and warmed, without an engine (benchmarks, tools)."""
    return Lifecycle(None, settings, pinned).initial_registry()


def default_state_dir() -> Path:
    """A directory every worker of this server agrees on: keyed by the parent (BentoML's arbiter) process."""
    return Path(tempfile.gettempdir()) / f"digits-serving-{os.getppid()}"


@dataclass
class Control:
    """The control API's changes on top of the version policies (``control.json``)."""

    loads: list[list[str]] = field(default_factory=list)  # [store name, version or ""]
    unloads: list[list[str]] = field(default_factory=list)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def apply(self, selected: dict[str, list[Stored]], stored: dict[str, list[Stored]]) -> dict[str, list[Stored]]:
        """Unloads, then loads: a load and an unload that cover the same version never both stay (each
        call drops the other's entries), so the only overlap is a whole-model unload followed by the
        load of one version, which then serves just that version (as Triton does)."""
        out = {name: list(vs) for name, vs in selected.items()}
        for name, version in self.unloads:
            out[name] = [s for s in out.get(name, []) if version and not versions.matches(s, [version])]
        for name, version in self.loads:
            for s in stored.get(name, []):
                if (not version or versions.matches(s, [version])) and s not in out.setdefault(name, []):
                    out[name].append(s)
        return {name: vs for name, vs in out.items() if vs}


class Lifecycle:
    """Keeps one worker's engine serving what the store, the policies and the control API say."""

    def __init__(self, engine: Engine | None, settings: Settings, pinned: Sequence[str] = ()) -> None:
        self.engine: Engine = engine  # type: ignore[assignment]  # None only for registry_from_store
        self.settings = settings
        self.tags = tuple(settings.models) or tuple(pinned)  # a fixed set: no policies, no polling
        self.policies = versions.parse_policies(settings.version_policy)
        self.providers = choose_providers(settings.providers, available_providers())
        self.state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
        self.failed: dict[tuple[str, str], str] = {}
        self.loading: set[tuple[str, str]] = set()
        self.stored: list[Stored] = []
        self._control_mtime: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ what to serve

    def desired(self) -> dict[str, list[Stored]]:
        """Per store name, the versions to serve: policy selection (over versions not refused) + control."""
        by_name: dict[str, list[Stored]] = {}
        for s in self.stored:
            if s.key not in self.failed:
                by_name.setdefault(s.store_name, []).append(s)
        if self.tags:
            return by_name
        selected = {name: versions.policy_for(self.policies, name).select(vs) for name, vs in by_name.items()}
        return self.control().apply(selected, by_name)  # type: ignore[arg-type]

    def labels(self) -> dict[str, dict[str, str]]:
        merged = {name: dict(pairs) for name, pairs in versions.parse_labels(self.settings.version_labels).items()}
        for name, pairs in self.control().labels.items():
            merged.setdefault(name, {}).update(pairs)
        return {name: {k: v for k, v in pairs.items() if v} for name, pairs in merged.items()}

    def _runtime(self, s: Stored) -> ModelRuntime:
        try:
            signature = s.signature()
        except (OSError, ValueError) as e:
            raise ModelIntegrityError(f"{s.store_name}:{s.version}: bad signature.json ({e})") from e
        kind = EnsembleRuntime if s.metadata.get("kind") == "ensemble" else ModelRuntime  # no model file of its own
        return kind(
            store_name=s.store_name,
            version=s.version,
            path=s.path,
            metadata=s.metadata,
            signature=signature,
            providers=self.providers,
            created=s.created,
            intra_op_threads=self.settings.intra_op_threads,
            spinning=self.settings.ort_spinning,
        )

    def _load(self, s: Stored) -> ModelRuntime | None:
        """Load and warm one version; None (and remembered as refused) if it fails its checks."""
        try:
            rt = self._runtime(s)
            rt.load()
            return rt
        except Exception as e:  # a bad version must never take down what serves
            self.failed[s.key] = str(e)[:500]
            logger.error("refused %s:%s: %s", s.store_name, s.version, e)
            return None

    # ------------------------------------------------------------ start-up (blocking, before connections)

    def initial_registry(self) -> Registry:
        """Load and warm what to serve, before the worker accepts connections."""
        self.stored = list_store(self.tags)
        registry = Registry([], self.settings.default_classifier, self.labels())
        while True:
            todo = [s for vs in self.desired().values() for s in vs if s.key not in {rt.key for rt in registry.served()}]
            if not todo:
                break
            for s in todo:
                rt = self._load(s)
                if rt is not None:
                    registry.add(rt)
        return registry

    # ------------------------------------------------------------ background sync

    def start(self) -> None:
        """Watch the store (and the control file) from this worker's event loop."""
        self.write_worker_state()
        if self._task is None and (self.settings.model_poll_s > 0 or self.settings.model_control) and not self.tags:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="model-lifecycle")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._retiring):
            task.cancel()
        with contextlib.suppress(OSError):
            self._worker_file().unlink()

    async def _watch(self) -> None:
        poll = self.settings.model_poll_s
        last_poll = time.monotonic()
        self._control_mtime = self._mtime()
        while True:
            await asyncio.sleep(1.0 if self.settings.model_control else poll)
            mtime = self._mtime()
            due = poll > 0 and time.monotonic() - last_poll >= poll
            if due or mtime != self._control_mtime:
                self._control_mtime = mtime
                last_poll = time.monotonic()
                try:
                    await self.sync()
                except Exception:
                    logger.exception("model store sync failed; serving what was served")

    async def sync(self) -> None:
        """Bring the engine in line with the store, the policies and the control state."""
        async with self._lock:
            if not self.tags:
                self.stored = await asyncio.to_thread(list_store)
            self.engine.registry.labels = self.labels()
            while True:
                served = {rt.key: rt for rt in self.engine.registry.served()}
                wanted = {s.key: s for vs in self.desired().values() for s in vs}
                todo = [s for key, s in wanted.items() if key not in served]
                if not todo:
                    break
                for s in todo:
                    self.loading.add(s.key)
                    try:
                        rt = await asyncio.to_thread(self._load, s)
                        if rt is not None:
                            await self.engine.add(rt)
                            logger.info("serving %s version %d", rt.store_name, rt.version_number)
                    finally:
                        self.loading.discard(s.key)
            for key, rt in served.items():
                if key not in wanted:
                    self._retire(rt)
            self.write_worker_state()

    def _retire(self, rt: ModelRuntime) -> None:
        task = asyncio.get_running_loop().create_task(self.engine.retire(rt, self.settings.retire_grace_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        task.add_done_callback(self._retired)
        logger.info("retiring %s version %d", rt.store_name, rt.version_number)

    def _retired(self, _: asyncio.Task[None]) -> None:
        trim_memory()
        self.write_worker_state()

    # ------------------------------------------------------------ control API

    def require_control(self) -> None:
        """Refuse (403) a change of the served set while SERVING_MODEL_CONTROL is off."""
        if not self.settings.model_control:
            raise Forbidden("the model control API is off; set SERVING_MODEL_CONTROL=true to load, unload and label models")
        if self.tags:
            raise Forbidden("this server serves a fixed set of models (SERVING_MODELS or a Bento's own); it cannot load or unload")

    def repository_index(self) -> list[dict[str, str]]:
        """Every stored version with its state on this worker: READY, LOADING or UNAVAILABLE (and why)."""
        served = {rt.key for rt in self.engine.registry.served()}
        wanted = {s.key for vs in self.desired().values() for s in vs}
        rows = []
        for s in sorted(self.stored, key=lambda s: (s.store_name, -s.version_number)):
            if s.key in served:
                state, reason = READY, ""
            elif s.key in self.loading:
                state, reason = LOADING, ""
            elif s.key in self.failed:
                state, reason = UNAVAILABLE, f"refused: {self.failed[s.key]}"
            elif s.key in wanted:
                state, reason = LOADING, "selected; loads on the next sync"
            else:
                policy = versions.policy_for(self.policies, s.store_name)
                state, reason = UNAVAILABLE, f"not selected (version policy {policy}, or unloaded)"
            rows.append({"name": s.store_name, "version": str(s.version_number), "state": state, "reason": reason})
        return rows

    async def load(self, name: str, version: str = "") -> None:
        self.require_control()
        store_name = self._stored_name(name, version)
        with self._edit_control() as control:
            control.unloads = [u for u in control.unloads if u[0] != store_name or (version and u[1] != version)]
            if version:
                control.loads.append([store_name, version])
        await self.sync()
        wanted = [s for s in self.stored if s.store_name == store_name and (not version or versions.matches(s, [version]))]
        refused = [f"{s.version_number}: {self.failed[s.key]}" for s in wanted if s.key in self.failed]
        if refused and not any(rt.store_name == store_name for rt in self.engine.registry.served()):
            raise InvalidInput(f"model {store_name} could not be loaded: {'; '.join(refused)[:500]}")

    async def unload(self, name: str, version: str = "") -> None:
        self.require_control()
        store_name = self._stored_name(name, version)
        with self._edit_control() as control:
            control.loads = [entry for entry in control.loads if entry[0] != store_name or (version and entry[1] != version)]
            control.unloads.append([store_name, version])
        await self.sync()

    async def set_label(self, name: str, label: str, version: str | None) -> None:
        """Point ``label`` of a model at a served version (None removes it); every worker follows."""
        self.require_control()
        if label.isdigit():
            raise InvalidInput(f"a label must not be a number: {label!r}")
        rt = self.engine.registry.find(name)
        if version is not None:
            self.engine.registry.find(rt.store_name, version)  # must be served
        with self._edit_control() as control:
            control.labels.setdefault(rt.store_name, {})[label] = version or ""
        await self.sync()

    def _stored_name(self, name: str, version: str) -> str:
        store_names = {s.store_name for s in self.stored}
        if name not in store_names:
            with contextlib.suppress(ModelNotFound):
                name = self.engine.registry.find(name).store_name
        if name not in store_names:
            raise ModelNotFound(f"no stored model {name[:100]!r}; stored: {', '.join(sorted(store_names)) or 'none'}")
        if version and not any(s.store_name == name and versions.matches(s, [version]) for s in self.stored):
            raise VersionNotFound(f"model {name} has no stored version {version[:100]!r}")
        return name

    # ------------------------------------------------------------ shared files

    def control(self) -> Control:
        try:
            data = json.loads((self.state_dir / CONTROL_FILE).read_text())
            return Control(data.get("loads", []), data.get("unloads", []), data.get("labels", {}))
        except (OSError, ValueError):
            return Control()

    def _mtime(self) -> float | None:
        try:
            return (self.state_dir / CONTROL_FILE).stat().st_mtime_ns / 1e9
        except OSError:
            return None

    @contextlib.contextmanager
    def _edit_control(self) -> Iterator[Control]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "control.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            control = self.control()
            yield control
            _write_json(self.state_dir / CONTROL_FILE, {"loads": control.loads, "unloads": control.unloads, "labels": control.labels})
        self._control_mtime = self._mtime()

    def _worker_file(self) -> Path:
        return self.state_dir / f"worker-{os.getpid()}.json"

    def write_worker_state(self) -> None:
        served: dict[str, list[int]] = {}
        for rt in self.engine.registry.served():
            served.setdefault(rt.store_name, []).append(rt.version_number)
        with contextlib.suppress(OSError):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_json(self._worker_file(), {"pid": os.getpid(), "serving": served, "updated": time.time()})

    def workers(self) -> dict[str, dict[str, list[int]]]:
        """What every live worker of this server serves, by pid (from their ``worker-<pid>.json``)."""
        out = {}
        for path in sorted(self.state_dir.glob("worker-*.json")):
            try:
                data = json.loads(path.read_text())
                os.kill(int(data["pid"]), 0)  # still alive?
            except (OSError, ValueError, KeyError):
                continue
            out[str(data["pid"])] = data["serving"]
        return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def trim_memory() -> None:
    """Hand freed heap back to the OS after a model is unloaded (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)

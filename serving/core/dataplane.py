"""The data plane: every protocol's requests are decided here, once.

A front hands over an :class:`~serving.core.request.InferRequest`; the data plane resolves the model
(public or store name, version number, tag or label, the kind the route serves), applies the input
rules of :mod:`serving.core.rules` (from the model's signature and kind), checks the outputs and
parameters asked for, runs the request on the engine (the model's shared batches, or the direct
path for bulk) and returns an :class:`~serving.core.request.InferResponse`. Triton's classification
extension is computed here too, so every protocol that offers it answers alike, and so are the
sampling of the trace extension (:mod:`serving.core.trace`) and the settings of the logging
extension (:mod:`serving.core.logs`). Nothing here knows a wire format.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import Forbidden, InvalidInput, ModelNotFound, ServingError

from . import statistics, verdict
from .batcher import CURRENT_TRACE
from .engine import Engine
from .kinds import ModelKind
from .lifecycle import Lifecycle, default_state_dir
from .logs import LogSettings
from .request import InferRequest, InferResponse, Output
from .rules import check_header, rows
from .runtime import ModelRuntime
from .shm import SystemSharedMemory
from .trace import Front, Trace, Tracer


class DataPlane:
    """Resolve, check, run: the one path from a decoded request to its answer."""

    def __init__(self, engine: Engine, lifecycle: Lifecycle | None = None) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.lifecycle = lifecycle  # None: a fixed set of models (tests, benchmarks): no control API
        state_dir = Path(self.settings.state_dir) if self.settings.state_dir else default_state_dir()
        self.shared_memory = SystemSharedMemory(state_dir)  # Triton's system shared memory, for every worker
        self.tracer = Tracer(state_dir, self.settings)  # Triton's trace extension, for every worker
        self.logs = LogSettings(state_dir, self.settings.log_level)  # Triton's logging extension, for every worker

    def control(self, change: bool = False) -> Lifecycle:
        """The model lifecycle, for the control API (Triton's repository extension, labels).
        ``change``: the caller will load, unload or label, so refuse now (403) if that is off,
        before a front reads the request's body."""
        if self.lifecycle is None:
            raise Forbidden("this server has a fixed set of models; there is no model repository control")
        if change:
            self.lifecycle.require_control()
        return self.lifecycle

    # ------------------------------------------------------------ models

    def model(self, name: str | None, version: str | None = None, kind: type[ModelKind] | None = None) -> ModelRuntime:
        """The served version a request means.

        ``kind``: the kind the route serves (then ``name`` None means its default model, and a model of
        another kind is a 400 that lists the right ones); None: any model, by store or public name.
        """
        registry = self.engine.registry
        if kind is None:
            if not name:
                raise InvalidInput("name a model: this call has no default model")
            return registry.find(name, version)
        if name is None:
            if kind.default_task is None:
                raise InvalidInput(f"name a model: there is no default {kind.name}; {kind.name}s: {', '.join(registry.names(kind.task))}")
            name = registry.default_name(kind.default_task)
        try:
            rt = registry.get(kind.task, name, version)
        except ModelNotFound:
            others = [rt for rt in registry.runtimes.values() if name in (rt.public_name, rt.store_name)]
            if others:
                raise InvalidInput(
                    f"model {str(name)[:100]!r} is {_a(others[0].kind.name)}, not {_a(kind.name)}; "
                    f"{kind.name}s: {', '.join(registry.names(kind.task)) or 'none'}"
                ) from None
            raise
        if not issubclass(rt.kind, kind):
            raise InvalidInput(f"model {rt.public_name!r} is {_a(rt.kind.name)}, not {_a(kind.name)}")
        return rt

    def partner(self, rt: ModelRuntime, kind: type[ModelKind]) -> ModelRuntime:
        """The served model of ``kind`` under ``rt``'s public name, in the version unversioned requests get (a VAE's decoder for its encoder)."""
        return self.model(rt.public_name, None, kind)

    def row_limit(self, rt: ModelRuntime, bulk: bool = False) -> int:
        return rt.kind.row_limit(self.settings, bulk)

    # ------------------------------------------------------------ infer

    def prepare(self, request: InferRequest) -> tuple[ModelRuntime, np.ndarray, list[Output]]:
        """Resolve and check everything (no model runs yet): the model, its float32 rows, the outputs to answer."""
        rt = self.model(request.model, request.version, request.kind)
        return (rt, *self.checked(rt, request))

    def checked(self, rt: ModelRuntime, request: InferRequest) -> tuple[np.ndarray, list[Output]]:
        """:meth:`check`, counting a refusal in the statistics extension."""
        started = time.perf_counter()
        try:
            return self.check(rt, request)
        except ServingError:
            self.engine.observe_request(rt, False, time.perf_counter() - started)
            raise

    def check(self, rt: ModelRuntime, request: InferRequest) -> tuple[np.ndarray, list[Output]]:
        """``request``'s float32 rows for ``rt`` and the outputs to answer, or the error that says what is wrong."""
        if len(request.inputs) != 1:
            raise InvalidInput(f"model {rt.store_name} takes one input {rt.input_spec['name']!r}, got {len(request.inputs)}")
        (tensor,) = request.inputs
        full = check_header(rt, tensor, self.row_limit(rt, request.bulk))
        batch = rows(rt, tensor, full)
        if request.members and not rt.kind.has_members:
            raise InvalidInput(f"members=true asks for each member's answer; it needs model=ensemble, not {rt.public_name!r}")
        return batch, self.outputs(rt, request.outputs, request.verdict)

    def outputs(self, rt: ModelRuntime, requested: list[Output] | None, verdict_too: bool = False) -> list[Output]:
        known = [o["name"] for o in verdict.outputs_of(rt)]
        if not requested:  # the model's own outputs, and the verdict's where the front asks for it
            return [Output(n) for n in (known if verdict_too else rt.output_names)]
        unknown = [o.name[:100] for o in requested if o.name not in known]
        if unknown:
            raise InvalidInput(f"model {rt.store_name} has no output(s) {unknown}; its outputs are {known}")
        for o in requested:
            if o.classes and (not rt.kind.classifies or o.classes < 0 or o.name in verdict.NAMES):
                raise InvalidInput(
                    f"output {o.name!r}: the classification parameter applies to a classifier's probabilities, with a count >= 1"
                )
        return requested

    async def infer(self, request: InferRequest, front: Front | None = None) -> InferResponse:
        """Resolve, check and compute one request. ``front``: the front's record of its arrival while
        tracing is on (it finishes the trace once its answer is encoded); without one, a sampled
        request's trace starts and ends here."""
        if self.tracer.active:
            return await self.traced(request, front)
        rt, batch, wanted = self.prepare(request)
        return await self.run(request, rt, batch, wanted)

    async def traced(self, request: InferRequest, front: Front | None) -> InferResponse:
        """:meth:`infer` while the trace extension is on: the same, with the phases' times when sampled."""
        own = front is None
        arrived = Front("") if front is None else front
        rt = self.model(request.model, request.version, request.kind)
        trace = self.tracer.sample(rt, request, arrived)
        if trace is None:
            return await self.run(request, rt, *self.checked(rt, request))
        token = CURRENT_TRACE.set(trace)  # the batcher hands this request's batch times to its trace
        try:
            batch, wanted = self.checked(rt, request)
            trace.checked(len(batch))
            response = await self.run(request, rt, batch, wanted, trace)
            trace.answer(response)
        except BaseException as e:
            trace.finish(e)
            raise
        finally:
            CURRENT_TRACE.reset(token)
        if own:
            trace.finish()
        return response

    async def run(
        self, request: InferRequest, rt: ModelRuntime, batch: np.ndarray, wanted: list[Output], trace: Trace | None = None
    ) -> InferResponse:
        """Compute a prepared request: batched with others, or on the direct path when it is bulk."""
        started = time.perf_counter()
        try:
            response = await self._run(request, rt, batch, wanted, trace)
        except Exception:
            self.engine.observe_request(rt, False, time.perf_counter() - started)
            raise
        self.engine.observe_request(rt, True, time.perf_counter() - started)
        return response

    async def _run(
        self, request: InferRequest, rt: ModelRuntime, batch: np.ndarray, wanted: list[Output], trace: Trace | None
    ) -> InferResponse:
        engine = self.engine
        members = None
        direct = time.perf_counter() if trace is not None and request.bulk else 0.0  # the direct path has no batcher to time it
        if request.members:
            if request.bulk:
                probs, members = await engine.infer_direct_members(rt, batch)  # type: ignore[arg-type]  # has_members: an ensemble
            else:
                probs, members = await engine.infer_members(rt, batch)  # type: ignore[arg-type]
            arrays = {rt.output_names[0]: probs}
        elif request.bulk:
            arrays = {rt.output_names[0]: await engine.infer_direct(rt, batch)}
        else:
            arrays = dict(zip(rt.output_names, await engine.infer(rt, batch)))
        if trace is not None and request.bulk:
            trace.computed(direct)
        judgement = None
        # Bulk answers are the probabilities alone (one N x 10 array), so no verdict is computed for them.
        if rt.kind.classifies and not request.bulk and any(o.name in verdict.NAMES for o in wanted):
            judgement = verdict.judge(rt, batch, arrays[rt.output_names[0]], self.settings.min_confidence)
            arrays.update(verdict.arrays(judgement))
        outputs = {
            o.name: classification(rt, arrays[o.name], o.classes) if o.classes else arrays[o.name] for o in wanted if o.name in arrays
        }
        return InferResponse(rt, outputs, wanted, members, request.id, judgement)

    # ------------------------------------------------------------ statistics

    def statistics(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """Triton's ``model_stats`` for every served version (no ``name``), every served version of
        ``name``, or the one ``version`` names (see :mod:`serving.core.statistics`)."""
        registry = self.engine.registry
        if not name:
            chosen = sorted(registry.runtimes.values(), key=lambda rt: (rt.store_name, rt.version_number))
        elif version:
            chosen = [self.model(name, version)]
        else:
            chosen = sorted(registry.versions_of(self.model(name).store_name), key=lambda rt: rt.version_number)
        return statistics.model_statistics([(rt.store_name, str(rt.version_number)) for rt in chosen])


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def classification(rt: ModelRuntime, probabilities: np.ndarray, classes: int) -> np.ndarray:
    """Triton's classification extension: per row, the top ``classes`` as ``b"score:index:label"`` (a BYTES tensor)."""
    k = min(classes, probabilities.shape[-1])
    labels: list[Any] = rt.signature.get("labels") or []
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    strings = [
        [f"{row[i]:f}:{i}:{labels[i]}".encode() if i < len(labels) else f"{row[i]:f}:{i}".encode() for i in idx]
        for row, idx in zip(probabilities, top)
    ]
    return np.array(strings, dtype=object)

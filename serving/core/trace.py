"""Triton's trace extension (``docs/protocol/extension_trace.md``) in its OpenTelemetry mode.

Settings, as Triton names them (values are strings, ``trace_level`` a list): ``trace_level`` (``OFF``,
or ``TIMESTAMPS`` and/or ``TENSORS``), ``trace_rate`` (trace one request in N; 0 = none),
``trace_count`` (traces left to take; -1 = no limit) and ``log_frequency`` (export the collected spans
after every N traces; 0 = on the span processor's schedule) can change at run time, for the whole
server or for one model (a model's setting overrides the server's field by field; ``null`` clears a
field, which then follows the server's again). ``trace_mode`` (``opentelemetry``), ``trace_file``
(``""``: spans go to the collector, never to a file), ``url`` (SERVING_TRACE_URL), ``resource`` and
the batch span processor's ``bsp_*`` (the SDK's ``OTEL_SERVICE_NAME`` and ``OTEL_BSP_*`` variables)
are fixed at start-up: a change to them is a 400, as in Triton.

The settings are shared by every worker (:mod:`serving.core.shared`, ``trace.json`` in the state
directory); ``trace_count`` is taken under its lock, so the limit holds for the whole server, while
``trace_rate`` counts each worker's own requests. With every level ``OFF`` nothing on the request
path changes but one attribute read (:attr:`Tracer.active`): no span object is made.

A traced request is one root span ``infer`` (attributes ``serving.protocol``, ``model_name``,
``model_version``, ``request_id``, ``serving.rows``) with a child span per phase, in order: ``front``
(arrival to rows checked and decoded), ``queue`` (waiting in the model's batcher), ``compute`` (the
batch's ONNX Runtime call: ``batch_size`` and its three phases, from the batcher's own timings) and
``response`` (the answer made and encoded). An ensemble has a ``queue`` and ``compute`` per member.
``TENSORS`` adds each input's and output's name, datatype and shape as events (never the values).
Spans go over OTLP/HTTP (protobuf) through the SDK's batch span processor; their resource names the
service and the worker (``process.pid``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.errors import InvalidInput, error_message

from .batcher import Phases
from .shared import Document, SharedDocument

if TYPE_CHECKING:
    from serving.settings import Settings

    from .request import InferRequest, InferResponse
    from .runtime import ModelRuntime

logger = logging.getLogger("serving.trace")

FILE = "trace.json"
OFF = "OFF"
LEVELS = ("TIMESTAMPS", "TENSORS")
MODE = "opentelemetry"
UPDATABLE = ("trace_level", "trace_rate", "trace_count", "log_frequency")
BSP = {"bsp_max_queue_size": ("OTEL_BSP_MAX_QUEUE_SIZE", 2048), "bsp_schedule_delay": ("OTEL_BSP_SCHEDULE_DELAY", 5000)}
BSP["bsp_max_export_batch_size"] = ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
UINT32_MAX, INT32_MAX = 2**32 - 1, 2**31 - 1
SERVICE_NAME = "digits"
GLOBAL = ""  # the owner of the server-wide settings (a model's are owned by its store name)


# ---------------------------------------------------------------- settings


def parse_level(value: Any) -> list[str]:
    """``trace_level`` as stored: [] for OFF, else its levels in Triton's order; InvalidInput if wrong."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f'trace_level must be a list of levels: ["OFF"], or "TIMESTAMPS" and/or "TENSORS"; got {_shown(value)}')
    unknown = [v[:40] for v in value if v != OFF and v not in LEVELS]
    if unknown:
        raise InvalidInput(f"unknown trace level(s) {unknown}; the levels are OFF, TIMESTAMPS and TENSORS")
    if OFF in value and len(set(value)) > 1:
        raise InvalidInput("trace_level OFF goes alone (it turns tracing off); drop it or the other levels")
    return [level for level in LEVELS if level in value]


def parse_integer(key: str, value: Any, low: int, high: int) -> int:
    """An integer setting sent as Triton sends it (a decimal string) or as a JSON integer."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 40:
        number = int(value)
    if number is None or not low <= number <= high:
        raise InvalidInput(f'{key} must be an integer in [{low}, {high}] (a string such as "{max(low, 1)}"), got {_shown(value)}')
    return number


def validate(changes: Any, fixed: dict[str, str]) -> dict[str, Any]:
    """The updatable settings a request changes (None: clear), or InvalidInput saying what is wrong.
    A start-up setting (``fixed``) may be sent back unchanged, as GET answered it."""
    if not isinstance(changes, dict):
        raise InvalidInput(
            f'trace settings are a JSON object of settings, such as {{"trace_level": ["TIMESTAMPS"]}}; got {_shown(changes)}'
        )
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key in fixed:
            if value is None or value == fixed[key] or value == [fixed[key]]:
                continue
            raise InvalidInput(_fixed_message(key))
        if key not in UPDATABLE:
            known = ", ".join((*UPDATABLE, *fixed))
            raise InvalidInput(f"unknown trace setting {str(key)[:60]!r}; the settings are {known}")
        if value is None:
            out[key] = None
        elif key == "trace_level":
            out[key] = parse_level(value)
        elif key == "trace_count":
            out[key] = parse_integer(key, value, -1, INT32_MAX)
        else:
            out[key] = parse_integer(key, value, 0, UINT32_MAX)
    return out


def _fixed_message(key: str) -> str:
    if key == "trace_file":
        return "trace_file cannot be set over the network (as in Triton): this server exports spans to its OpenTelemetry collector (url)"
    if key == "trace_mode":
        return f"trace_mode is {MODE!r}: this server traces with OpenTelemetry only"
    return f"{key} is set when the server starts (SERVING_TRACE_URL, OTEL_SERVICE_NAME, OTEL_BSP_*), not over the network"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Effective:
    """The settings a request for one model follows, and who owns its count."""

    levels: tuple[str, ...]
    rate: int
    count: int
    log_frequency: int
    key: str = GLOBAL  # whose sample counter (a model with settings of its own has its own)
    count_owner: str = GLOBAL  # whose trace_count is taken

    @property
    def on(self) -> bool:
        return bool(self.levels) and self.rate > 0 and self.count != 0


@dataclass(frozen=True)
class View:
    server: Effective
    models: dict[str, Effective] = field(default_factory=dict)

    def of(self, model: str) -> Effective:
        return self.models.get(model, self.server)


def _effective(defaults: dict[str, Any], doc: Document | None) -> View:
    server = {**defaults, **((doc or {}).get("global") or {})}

    def make(values: dict[str, Any], key: str, owner: str) -> Effective:
        return Effective(tuple(values["trace_level"]), values["trace_rate"], values["trace_count"], values["log_frequency"], key, owner)

    models = {
        name: make({**server, **spec}, name, name if "trace_count" in spec else GLOBAL)
        for name, spec in ((doc or {}).get("models") or {}).items()
    }
    return View(make(server, GLOBAL, GLOBAL), models)


# ---------------------------------------------------------------- the tracer


class Tracer:
    """This server's trace settings (shared by its workers), the sampling, and the span exporter."""

    def __init__(self, state_dir: Path, settings: Settings) -> None:
        self.url = settings.trace_url or ""
        self.defaults: dict[str, Any] = {
            "trace_level": parse_level(settings.trace_level.split(",")),
            "trace_rate": settings.trace_rate,
            "trace_count": settings.trace_count,
            "log_frequency": 0,
        }
        # The SDK's own variables, read once here (and given to the SDK, so what GET reports is what runs).
        self.service_name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
        self.bsp = {key: _env_int(name, default) for key, (name, default) in BSP.items()}
        self.active = False  # any setting on: the one thing the request path reads when tracing is off
        self.view = _effective(self.defaults, None)
        self.seen: dict[str, int] = {}
        self.finished = 0
        self.spans: Any = None  # the OpenTelemetry tracer, made when tracing first turns on
        self.provider: Any = None
        self.flush = threading.Event()
        self.document = SharedDocument(state_dir / FILE, self.apply_document)

    def fixed(self) -> dict[str, str]:
        return {
            "trace_file": "",
            "trace_mode": MODE,
            "url": self.url,
            "resource": f"service.name={self.service_name}",
            **{key: str(value) for key, value in self.bsp.items()},
        }

    def current(self, model: str | None = None) -> dict[str, Any]:
        """Every setting for ``model`` (None: the server's), as Triton's GET answers: strings, a level list."""
        eff = _effective(self.defaults, self.document.read())
        e = eff.of(model) if model else eff.server
        return {
            "trace_level": list(e.levels) or [OFF],
            "trace_rate": str(e.rate),
            "trace_count": str(e.count),
            "log_frequency": str(e.log_frequency),
            **self.fixed(),
        }

    def update(self, changes: Any, model: str | None = None) -> dict[str, Any]:
        """Apply ``changes`` (validated first) to the server's settings or to ``model``'s, on every worker."""
        valid = validate(changes, self.fixed())
        with self.document.edit() as doc:
            server = doc.setdefault("global", dict(self.defaults))
            if model is None:
                server.update({k: self.defaults[k] if v is None else v for k, v in valid.items()})
            else:
                models = doc.setdefault("models", {})
                spec = {k: v for k, v in {**models.get(model, {}), **valid}.items() if v is not None}
                if spec:
                    models[model] = spec
                else:
                    models.pop(model, None)
            view = _effective(self.defaults, doc)
            if not self.url and any(e.levels for e in (view.server, *view.models.values())):
                raise InvalidInput(
                    "tracing needs an OpenTelemetry collector: start the server with SERVING_TRACE_URL "
                    "(such as http://127.0.0.1:4318/v1/traces); until then trace_level stays OFF"
                )
        now = self.current(model)
        shown = ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in now.items() if k in UPDATABLE)
        logger.info("trace settings%s: %s", f" of {model}" if model else "", shown)
        return now

    def apply_document(self, doc: Document | None) -> None:
        view = _effective(self.defaults, doc)
        active = any(e.on for e in (view.server, *view.models.values()))
        if active and self.spans is None:
            self.start_exporter()
        self.view = view
        self.active = active

    def start_exporter(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        # process.pid: which worker served the request
        resource = Resource.create({"service.name": self.service_name, "process.pid": os.getpid()})
        provider = TracerProvider(sampler=ALWAYS_ON, resource=resource)
        processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=self.url),
            max_queue_size=self.bsp["bsp_max_queue_size"],
            schedule_delay_millis=self.bsp["bsp_schedule_delay"],
            max_export_batch_size=self.bsp["bsp_max_export_batch_size"],
        )
        provider.add_span_processor(processor)
        self.provider = provider
        self.spans = provider.get_tracer("serving.trace")
        threading.Thread(target=self.flusher, name="trace-flush", daemon=True).start()

    def flusher(self) -> None:
        """log_frequency: export what was collected as soon as asked (off the event loop)."""
        while True:
            self.flush.wait()
            self.flush.clear()
            self.provider.force_flush()

    # ------------------------------------------------------------ the request path (tracing on)

    def front(self, protocol: str) -> Front | None:
        """A front's record of one request's arrival while tracing is on (None while it is off)."""
        return Front(protocol) if self.active else None

    def sample(self, rt: ModelRuntime, request: InferRequest, front: Front) -> Trace | None:
        """This request's trace, when the settings for its model sample it."""
        eff = self.view.of(rt.store_name)
        if not eff.on:
            return None
        seen = self.seen.get(eff.key, 0) + 1
        self.seen[eff.key] = seen
        if seen % eff.rate or (eff.count > 0 and not self.take(eff.count_owner)):
            return None
        trace = Trace(self, front, rt, request, eff)
        front.trace = trace
        return trace

    def take(self, owner: str) -> bool:
        """One of ``owner``'s trace_count, taken for the whole server (False when none is left)."""
        with self.document.edit() as doc:
            server = doc.setdefault("global", dict(self.defaults))
            section = server if owner == GLOBAL else (doc.get("models") or {}).get(owner)
            if section is None:  # the model's own count was cleared meanwhile: the server's counts
                section = server
            count = section.get("trace_count", server["trace_count"])
            if count == 0:
                return False
            if count > 0:
                section["trace_count"] = count - 1
        return True

    def export(self, trace: Trace, end: float, error: BaseException | None) -> None:
        """The trace's spans, with the times it recorded (perf_counter seconds, made epoch ns here)."""
        from opentelemetry import context
        from opentelemetry import trace as api
        from opentelemetry.trace import SpanKind, Status, StatusCode

        offset = time.time_ns() - int(time.perf_counter() * 1e9)

        def ns(t: float) -> int:
            return offset + int(t * 1e9)

        tracer = self.spans
        front = trace.front
        attributes: dict[str, Any] = {"model_name": trace.model, "model_version": trace.version, "serving.rows": trace.rows}
        if front.protocol:
            attributes["serving.protocol"] = front.protocol
        if trace.request_id:
            attributes["request_id"] = trace.request_id
        root = tracer.start_span(
            "infer", context=context.Context(), kind=SpanKind.SERVER, attributes=attributes, start_time=ns(front.received)
        )
        parent = api.set_span_in_context(root)

        def child(
            name: str, start: float, stop: float, attrs: dict[str, Any], events: Sequence[tuple[str, dict[str, Any], float]] = ()
        ) -> None:
            span = tracer.start_span(name, context=parent, attributes=attrs, start_time=ns(start))
            for event, event_attrs, at in events:
                span.add_event(event, event_attrs, timestamp=ns(at))
            span.end(end_time=ns(stop))

        decoded = trace.decoded or end
        child("front", front.received, decoded, {}, [("input", t, decoded) for t in trace.inputs])
        for model, enqueued, started, phases, rows in trace.batches:
            child("queue", enqueued, started, {"model_name": model})
            computed = started + sum(phases)
            child(
                "compute",
                started,
                computed,
                {
                    "model_name": model,
                    "batch_size": rows,
                    **{
                        f"{name}_ns": int(seconds * 1e9)
                        for name, seconds in zip(("compute_input", "compute_infer", "compute_output"), phases)
                    },
                },
                [("compute_input_end", {}, started + phases[0]), ("compute_infer_end", {}, started + phases[0] + phases[1])],
            )
        if trace.direct is not None:
            child("compute", trace.direct[0], trace.direct[1], {"model_name": trace.model, "batch_size": trace.rows, "direct": True})
        if trace.answered:
            child("response", trace.answered, end, {}, [("output", t, end) for t in trace.outputs])
        if error is not None:
            message = "cancelled" if not isinstance(error, Exception) else error_message(error)
            root.add_event("exception", {"exception.type": type(error).__name__, "exception.message": message}, timestamp=ns(end))
            root.set_status(Status(StatusCode.ERROR, message))
        root.end(end_time=ns(end))
        self.finished += 1
        if trace.log_frequency and self.finished % trace.log_frequency == 0:
            self.flush.set()


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class Front:
    """One request as a protocol front received it, while tracing is on: the data plane hangs its trace
    here when it samples the request, and the front calls :meth:`finish` once its answer is encoded."""

    __slots__ = ("protocol", "received", "trace")

    def __init__(self, protocol: str, received: float | None = None) -> None:
        self.protocol = protocol
        self.received = time.perf_counter() if received is None else received
        self.trace: Trace | None = None

    def finish(self, error: BaseException | None = None) -> None:
        if self.trace is not None:
            self.trace.finish(error)


class Trace:
    """What one sampled request's spans are made of: the times the data plane and the batcher saw."""

    def __init__(self, tracer: Tracer, front: Front, rt: ModelRuntime, request: InferRequest, eff: Effective) -> None:
        self.tracer = tracer
        self.front = front
        self.model, self.version = rt.store_name, str(rt.version_number)
        self.request_id = request.id or ""
        self.log_frequency = eff.log_frequency
        self.tensors = "TENSORS" in eff.levels
        self.inputs = (
            [{"name": t.name or "", "datatype": t.datatype, "shape": list(t.shape)} for t in request.inputs] if self.tensors else []
        )
        self.outputs: list[dict[str, Any]] = []
        self.rows = 0
        self.decoded = 0.0  # rows checked and decoded: the front phase ends
        self.batches: list[tuple[str, float, float, Phases, int]] = []  # (model, enqueued, batch started, phases, batch rows)
        self.direct: tuple[float, float] | None = None  # a bulk request's own computation
        self.answered = 0.0  # the engine's answer is back: the response phase starts
        self.done = False

    def checked(self, rows: int) -> None:
        self.rows = rows
        self.decoded = time.perf_counter()

    def batched(self, model: str, enqueued: float, started: float, phases: Phases, rows: int) -> None:
        """From the batcher, once this request's batch ran (each member's, for an ensemble)."""
        self.batches.append((model, enqueued, started, phases, rows))

    def computed(self, started: float) -> None:
        self.direct = (started, time.perf_counter())

    def answer(self, response: InferResponse) -> None:
        self.answered = time.perf_counter()
        if self.tensors:
            from .request import datatype_of

            self.outputs = [
                {"name": name, "datatype": datatype_of(arr.dtype), "shape": list(arr.shape)} for name, arr in response.outputs.items()
            ]

    def finish(self, error: BaseException | None = None) -> None:
        """Export the spans (once: a front's finish after the data plane's is a no-op)."""
        if self.done:
            return
        self.done = True
        self.tracer.export(self, time.perf_counter(), error)

"""TensorFlow Serving compatible gRPC front (PredictionService + grpc.health.v1 + reflection).

It only translates: TensorProto -> validated float32 rows -> the HTTP service's
batchable ``/internal/predict`` (so gRPC and HTTP requests share BentoML's
adaptive batches) -> TensorProto. It runs in its own process because the
TF-Serving protos import TensorFlow, which the HTTP worker must not load.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from typing import Any, Sequence

import grpc
import httpx

from . import codec
from .errors import (
    InvalidInput,
    ModelNotFound,
    NotReady,
    ServingError,
    Unimplemented,
    VersionNotFound,
    error_message,
    grpc_code,
)
from .settings import Settings

logger = logging.getLogger("serving.grpc")

SIGNATURE_NAME = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService")


class Backend:
    """The HTTP service as seen from the front: model catalog, readiness, the batched path."""

    def __init__(self, http_url: str, timeout: float) -> None:
        self.client = httpx.AsyncClient(
            base_url=http_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._models: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0

    async def close(self) -> None:
        await self.client.aclose()

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def model(self, name: str, version: int | None) -> dict[str, Any]:
        entry = self._models.get(name)
        if entry is None or not entry.get("ready") or time.monotonic() - self._fetched_at > 30:
            await self._refresh()
            entry = self._models.get(name)
        if entry is None:
            raise ModelNotFound(f"unknown model {name!r}; available: {', '.join(sorted(self._models)) or 'none'}")
        if version is not None and version != entry["version_number"]:
            raise VersionNotFound(f"model {name} has no version {version}; serving version {entry['version_number']}")
        return entry

    async def _refresh(self) -> None:
        try:
            response = await self.client.get("/v1/models")
        except httpx.HTTPError as e:
            raise NotReady(f"the model service is unreachable: {e}") from e
        if response.status_code != 200:
            raise NotReady("the model service is not ready")
        self._models = {m["store_name"]: m for m in response.json()["models"]}
        self._fetched_at = time.monotonic()

    async def predict(self, store_name: str, rows: Any) -> list[str]:
        try:
            response = await self.client.post("/internal/predict", json={"items": codec.encode_items(store_name, rows)})
        except httpx.HTTPError as e:
            raise NotReady(f"the model service is unreachable: {e}") from e
        if response.status_code == 503:
            raise NotReady("the model service is overloaded or not ready; retry")
        if response.status_code != 200:
            raise ServingError(f"model service answered {response.status_code}: {response.text[:200]}")
        return response.json()


class PredictionServicer:
    """tensorflow.serving.PredictionService over :class:`Backend`."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from tensorflow_serving.apis import predict_pb2

        try:
            entry = await self._model(request.model_spec)
            signature = entry["signature"]
            spec = signature["inputs"][0]
            keys = set(request.inputs.keys())
            if keys != {spec["name"]}:
                raise InvalidInput(f"model {entry['store_name']} takes exactly one input {spec['name']!r}, got {sorted(keys)}")
            arr = codec.tensor_proto_to_array(request.inputs[spec["name"]])
            rows = codec.validate_array(arr, spec, spec["name"])
            codec.check_rows(rows, self.settings.max_images_per_request, spec["name"])
            wanted = list(request.output_filter) or [o["name"] for o in signature["outputs"]]
            known = [o["name"] for o in signature["outputs"]]
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise InvalidInput(f"output_filter names unknown outputs {unknown}; outputs are {known}")
            answers = await self.backend.predict(entry["store_name"], rows)
            outputs = dict(zip(known, codec.split_outputs(signature, answers)))
            response = predict_pb2.PredictResponse()
            self._fill_spec(response.model_spec, entry)
            for name in wanted:
                response.outputs[name].CopyFrom(codec.array_to_tensor_proto(outputs[name]))
            return response
        except ServingError as e:
            await _abort(context, e)

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from tensorflow_serving.apis import get_model_metadata_pb2

        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
            entry = await self._model(request.model_spec, need_ready=False)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            self._fill_spec(response.model_spec, entry)
            response.metadata["signature_def"].Pack(signature_def_map(entry["signature"]))
            return response
        except ServingError as e:
            await _abort(context, e)

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _abort(context, Unimplemented("Classify is not offered: call Predict with signature serving_default"))

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _abort(context, Unimplemented("Regress is not offered: call Predict with signature serving_default"))

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _abort(context, Unimplemented("MultiInference is not offered: call Predict with signature serving_default"))

    async def _model(self, model_spec: Any, need_ready: bool = True) -> dict[str, Any]:
        if model_spec.signature_name not in ("", SIGNATURE_NAME):
            raise InvalidInput(f"unknown signature {model_spec.signature_name!r}; models offer {SIGNATURE_NAME!r}")
        if model_spec.WhichOneof("version_choice") == "version_label":
            raise VersionNotFound(f"version labels are not used; ask for a version number or none (got {model_spec.version_label!r})")
        version = model_spec.version.value if model_spec.HasField("version") else None
        entry = await self.backend.model(model_spec.name, version)
        if need_ready and not entry.get("ready"):
            raise NotReady(f"model {model_spec.name} is still loading")
        return entry

    @staticmethod
    def _fill_spec(spec: Any, entry: dict[str, Any]) -> None:
        spec.name = entry["store_name"]
        spec.version.value = entry["version_number"]
        spec.signature_name = SIGNATURE_NAME


def signature_def_map(signature: dict[str, Any]) -> Any:
    """signature.json -> tensorflow.serving.SignatureDefMap (what TF Serving's GetModelMetadata returns)."""
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    def tensor_info(spec: dict[str, Any]) -> Any:
        return meta_graph_pb2.TensorInfo(
            name=spec["name"],
            dtype=codec.tf_dtype(spec["dtype"]),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in spec["shape"]]
            ),
        )

    sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for spec in signature["inputs"]:
        sig.inputs[spec["name"]].CopyFrom(tensor_info(spec))
    for spec in signature["outputs"]:
        sig.outputs[spec["name"]].CopyFrom(tensor_info(spec))
    result = get_model_metadata_pb2.SignatureDefMap()
    result.signature_def[SIGNATURE_NAME].CopyFrom(sig)
    return result


async def _abort(context: grpc.aio.ServicerContext, exc: ServingError) -> None:
    if grpc_code(exc) in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        logger.error("gRPC request failed", exc_info=exc)
    await context.abort(grpc_code(exc), error_message(exc))


async def serve(settings: Settings, http_url: str, host: str, port: int, ready_event: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting and drain in-flight calls."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection
    from tensorflow_serving.apis import prediction_service_pb2, prediction_service_pb2_grpc

    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    backend = Backend(http_url, timeout=60.0)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(backend, settings), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"cannot bind gRPC to {address}")
    await server.start()
    logger.info("gRPC PredictionService on %s -> %s", address, http_url)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def watch_health() -> None:
        serving = None
        while not stopping.is_set():
            now = await backend.ready()
            if now != serving:
                status = health_pb2.HealthCheckResponse.SERVING if now else health_pb2.HealthCheckResponse.NOT_SERVING
                for name in HEALTH_SERVICES:
                    await health_servicer.set(name, status)
                serving = now
                logger.info("gRPC health: %s", "SERVING" if now else "NOT_SERVING")
            try:
                await asyncio.wait_for(stopping.wait(), timeout=0.5 if not now else 2.0)
            except asyncio.TimeoutError:
                pass

    watcher = asyncio.create_task(watch_health())
    if ready_event is not None:
        ready_event.set()
    await stopping.wait()
    logger.info("gRPC draining (up to %.0fs)", settings.drain_timeout_s)
    for name in HEALTH_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=settings.drain_timeout_s)
    watcher.cancel()
    await backend.close()
    logger.info("gRPC stopped")


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m serving.grpc_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.grpc_port)
    parser.add_argument("--http-url", default=f"http://127.0.0.1:{settings.http_port}", help="the BentoML service to forward to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded call is noise
    asyncio.run(serve(settings, args.http_url, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""TensorFlow Serving compatible gRPC front: PredictionService, grpc.health.v1 and reflection.

A ``grpc.aio`` server on the worker's own event loop, calling the same engine as the HTTP
routes (so gRPC and HTTP requests share batches). Every worker binds the same port;
gRPC sets ``SO_REUSEPORT`` on Linux, so the kernel spreads connections over the workers.
It only translates: TensorProto -> validated float32 rows -> ``engine.infer`` -> TensorProto.
The messages come from the protos generated into ``contract.protos``: no TensorFlow here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from contract import tensors
from contract.errors import InvalidInput, PayloadTooLarge, ServingError, Unimplemented, error_message, grpc_code
from contract.protos.tensorflow.core.framework import tensor_shape_pb2
from contract.protos.tensorflow.core.protobuf import meta_graph_pb2
from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from . import codec
from .engine import Engine
from .runtime import ModelRuntime

logger = logging.getLogger("serving.grpc")

SERVICE = "tensorflow.serving.PredictionService"
SIGNATURE_NAME = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
HEALTH_SERVICES = ("", SERVICE, "inference.GRPCInferenceService")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class PredictionServicer:
    """tensorflow.serving.PredictionService over the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext) -> Any:
        rt = self._model(request.model_spec)
        spec = rt.input_spec
        keys = set(request.inputs.keys())
        if keys != {spec["name"]}:
            raise InvalidInput(f"model {rt.store_name} takes exactly one input {spec['name']!r}, got {sorted(keys)}")
        # Bound the tensor by the per-request row limit before anything is allocated.
        tensor = request.inputs[spec["name"]]
        limit = self.settings.max_images_per_request
        if tensor.tensor_shape.dim and tensor.tensor_shape.dim[0].size > limit:
            raise PayloadTooLarge(f"at most {limit} {spec['name']} rows per request, got {tensor.tensor_shape.dim[0].size}")
        arr = tensors.tensor_proto_to_array(tensor, limit * math.prod(rt.row_shape))
        rows = codec.validate_array(arr, spec, spec["name"])
        codec.check_rows(rows, self.settings.max_images_per_request, spec["name"])
        known = rt.output_names
        wanted = list(request.output_filter) or known
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise InvalidInput(f"output_filter names unknown outputs {unknown}; outputs are {known}")
        outputs = dict(zip(known, await self.engine.infer(rt, rows)))
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, rt)
        for name in wanted:
            response.outputs[name].CopyFrom(tensors.array_to_tensor_proto(outputs[name]))
        return response

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
        rt = self._model(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, rt)
        response.metadata["signature_def"].Pack(signature_def_map(rt.signature))
        return response

    def _model(self, model_spec: Any) -> ModelRuntime:
        if model_spec.signature_name not in ("", SIGNATURE_NAME):
            raise InvalidInput(f"unknown signature {model_spec.signature_name!r}; models offer {SIGNATURE_NAME!r}")
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            version: str | None = str(model_spec.version.value)
        elif choice == "version_label":
            version = model_spec.version_label
            if not version or version.isdigit():
                raise InvalidInput(f"version_label must be a label such as 'stable', got {version[:100]!r}")
        else:
            version = None
        return self.engine.registry.find(model_spec.name, version)

    def handlers(self) -> grpc.GenericRpcHandler:
        """The service's method handlers; requests are parsed here so undecodable bytes are INVALID_ARGUMENT."""
        methods: dict[str, tuple[Handler, Any]] = {
            "Predict": (self.Predict, predict_pb2.PredictRequest),
            "GetModelMetadata": (self.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest),
        }
        table = {name: guarded_handler(fn, cls) for name, (fn, cls) in methods.items()}
        for name in ("Classify", "Regress", "MultiInference"):
            table[name] = unimplemented_handler(Unimplemented(f"{name} is not offered: call Predict with signature {SIGNATURE_NAME}"))
        return grpc.method_handlers_generic_handler(SERVICE, table)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def guarded_handler(fn: Handler, request_cls: Any) -> grpc.RpcMethodHandler:
    """A unary handler that parses the request itself (undecodable bytes are INVALID_ARGUMENT) and maps errors to codes."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            try:
                request = request_cls.FromString(raw)
            except DecodeError as e:
                raise InvalidInput(f"the request is not a valid {request_cls.DESCRIPTOR.full_name} message") from e
            return await fn(request, context)
        except ServingError as e:
            await abort(context, e)
        except Exception as e:  # a fault of ours: generic message out, traceback to the log
            logger.exception("gRPC %s failed", request_cls.DESCRIPTOR.name)
            await abort(context, e)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=_serialize)


def unimplemented_handler(error: Unimplemented) -> grpc.RpcMethodHandler:
    """A unary handler that answers UNIMPLEMENTED with ``error``'s message."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    return grpc.unary_unary_rpc_method_handler(handle)


def _fill_spec(spec: Any, rt: ModelRuntime) -> None:
    spec.name = rt.store_name
    spec.version.value = rt.version_number
    spec.signature_name = SIGNATURE_NAME


def signature_def_map(signature: dict[str, Any]) -> get_model_metadata_pb2.SignatureDefMap:
    """signature.json -> tensorflow.serving.SignatureDefMap (what TF Serving's GetModelMetadata returns)."""

    def tensor_info(spec: dict[str, Any]) -> Any:
        return meta_graph_pb2.TensorInfo(
            name=spec["name"],
            dtype=tensors.tf_dtype(spec["dtype"]),  # type: ignore[arg-type]  # the stubs type enums as DataType, values are ints
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in spec["shape"]]),
        )

    sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for spec in signature["inputs"]:
        sig.inputs[spec["name"]].CopyFrom(tensor_info(spec))
    for spec in signature["outputs"]:
        sig.outputs[spec["name"]].CopyFrom(tensor_info(spec))
    result = get_model_metadata_pb2.SignatureDefMap()
    result.signature_def[SIGNATURE_NAME].CopyFrom(sig)
    return result


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    await context.abort(grpc_code(exc), error_message(exc))


class GrpcFront:
    """The worker's grpc.aio server: PredictionService + health + reflection on one port."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.server: grpc.aio.Server | None = None
        self.health: Any = None

    async def start(self) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        limit = self.settings.grpc_max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1),  # every worker binds the port; the kernel spreads connections
            ],
        )
        from .v2_grpc import SERVICE as V2_SERVICE
        from .v2_grpc import InferenceServicer

        server.add_generic_rpc_handlers((PredictionServicer(self.engine).handlers(), InferenceServicer(self.engine).handlers()))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE, V2_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        if server.add_insecure_port(address) == 0:
            raise RuntimeError(f"cannot bind gRPC to {address}")
        await server.start()
        self.server = server
        await self.set_serving(self.engine.ready)
        logger.info("gRPC PredictionService and GRPCInferenceService on %s", address)

    async def set_serving(self, serving: bool) -> None:
        from grpc_health.v1 import health_pb2

        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in HEALTH_SERVICES:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING, stop accepting calls, finish those in flight (at most ``grace`` seconds)."""
        if self.server is None:
            return
        server, self.server = self.server, None
        await self.set_serving(False)
        await server.stop(grace)
        logger.info("gRPC stopped")

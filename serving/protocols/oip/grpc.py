"""Open Inference Protocol (KServe v2 / Triton) over gRPC: ``inference.GRPCInferenceService``; it only translates.

Served by the worker's ``grpc.aio`` server next to TF Serving's PredictionService (see
:mod:`serving.grpc_front`), on the same engine, so v2 calls share batches with every other
protocol. Inputs come as typed ``contents`` or ``raw_input_contents``; outputs go back as
``raw_output_contents``, as Triton answers. Messages are generated from Triton's
``grpc_service.proto`` into ``contract.protos.inference`` (byte-identical to tritonclient's).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from contract.errors import Forbidden, InvalidInput, Unimplemented
from contract.protos.inference import grpc_service_pb2 as pb
from contract.protos.inference import model_config_pb2
from serving.core.engine import Engine
from serving.core.lifecycle import Lifecycle
from serving.transport.grpc import guarded_handler, unimplemented_handler

from . import common as v2

SERVICE = "inference.GRPCInferenceService"

# InferTensorContents field per datatype (Triton's mapping; UINT8/16 travel as uint_contents, INT8/16 as int_contents).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceServicer:
    """inference.GRPCInferenceService over the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.engine.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        v2.find_model(self.engine, request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**v2.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        meta = v2.model_metadata(self.engine, v2.find_model(self.engine, request.name, request.version))
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> Any:
        rt = v2.find_model(self.engine, request.name, request.version)
        config = v2.model_config(self.engine, rt)
        message = model_config_pb2.ModelConfig(
            name=config["name"],
            platform=config["platform"],
            backend=config["backend"],
            max_batch_size=config["max_batch_size"],
            input=[model_config_pb2.ModelInput(name=t["name"], data_type=t["data_type"], dims=t["dims"]) for t in config["input"]],
            output=[model_config_pb2.ModelOutput(name=t["name"], data_type=t["data_type"], dims=t["dims"]) for t in config["output"]],
            dynamic_batching=model_config_pb2.ModelDynamicBatching(),
            parameters={k: model_config_pb2.ModelParameter(string_value=v["string_value"]) for k, v in config["parameters"].items()},
        )
        return pb.ModelConfigResponse(config=message)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> Any:
        engine = self.engine
        rt = v2.find_model(engine, request.model_name, request.model_version)
        if len(request.inputs) != 1:
            raise InvalidInput(f"model {rt.store_name} takes one input {rt.input_spec['name']!r}, got {len(request.inputs)}")
        (tensor,) = request.inputs
        dtype, shape = v2.check_input_header(engine, rt, tensor.name, tensor.datatype, list(tensor.shape))
        raw = request.raw_input_contents
        if raw:
            if len(raw) != 1:
                raise InvalidInput(f"raw_input_contents has {len(raw)} entries for 1 input")
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {tensor.name!r} has both contents and raw_input_contents; send one")
            arr = v2.array_from_bytes(tensor.name, dtype, shape, raw[0])
        else:
            values = getattr(tensor.contents, _CONTENTS_FIELD[tensor.datatype])
            if not values:
                raise InvalidInput(
                    f"input {tensor.name!r} has no data: send contents.{_CONTENTS_FIELD[tensor.datatype]} or raw_input_contents"
                )
            arr = v2.shaped(tensor.name, dtype, shape, np.asarray(values))
        rows = v2.to_rows(rt, tensor.name, arr)
        outputs = v2.check_outputs(rt, [_requested(o) for o in request.outputs] or None)
        arrays = await v2.infer(engine, rt, rows)
        response = pb.ModelInferResponse(model_name=rt.store_name, model_version=str(rt.version_number), id=request.id)
        for out in outputs:
            datatype, arr = v2.output_array(rt, out, arrays)
            response.outputs.add(name=out.name, datatype=datatype, shape=arr.shape)
            response.raw_output_contents.append(v2.raw_bytes(datatype, arr))
        return response

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext) -> Any:
        rows = self._lifecycle().repository_index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**r) for r in rows])

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._lifecycle().load(request.model_name, _version_parameter(request.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._lifecycle().unload(request.model_name, _version_parameter(request.parameters))
        return pb.RepositoryModelUnloadResponse()

    def _lifecycle(self) -> Lifecycle:
        if self.engine.lifecycle is None:
            raise Forbidden("this server has a fixed set of models; there is no model repository control")
        return self.engine.lifecycle

    def handlers(self) -> grpc.GenericRpcHandler:
        """Method handlers: requests parsed here (undecodable bytes are INVALID_ARGUMENT); the rest UNIMPLEMENTED."""
        implemented = {
            "ServerLive": pb.ServerLiveRequest,
            "ServerReady": pb.ServerReadyRequest,
            "ModelReady": pb.ModelReadyRequest,
            "ServerMetadata": pb.ServerMetadataRequest,
            "ModelMetadata": pb.ModelMetadataRequest,
            "ModelConfig": pb.ModelConfigRequest,
            "ModelInfer": pb.ModelInferRequest,
            "RepositoryIndex": pb.RepositoryIndexRequest,
            "RepositoryModelLoad": pb.RepositoryModelLoadRequest,
            "RepositoryModelUnload": pb.RepositoryModelUnloadRequest,
        }
        table = {name: guarded_handler(getattr(self, name), cls) for name, cls in implemented.items()}
        service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
        for method in service.methods:
            if method.name not in table and not method.client_streaming:
                table[method.name] = unimplemented_handler(
                    Unimplemented(f"{method.name} is not offered by this server (see ServerMetadata extensions)")
                )
        return grpc.method_handlers_generic_handler(SERVICE, table)


def _version_parameter(parameters: Any) -> str:
    """The ``version`` parameter of a load/unload request (our extension: one version), else ""."""
    if "version" not in parameters:
        return ""
    value = parameters["version"]
    which = value.WhichOneof("parameter_choice")
    if which not in ("string_param", "int64_param"):
        raise InvalidInput("parameters.version must be a version number or tag")
    return str(getattr(value, which))


def _requested(out: Any) -> v2.Output:
    classes = out.parameters["classification"].int64_param if "classification" in out.parameters else 0
    return v2.Output(out.name, int(classes))

"""Open Inference Protocol (KServe v2 / Triton) over gRPC: ``inference.GRPCInferenceService``; it only translates.

Served by the worker's ``grpc.aio`` server next to TF Serving's PredictionService (see
:mod:`serving.transport.grpc`), on the same data plane, so v2 calls share batches with every other
protocol. Inputs come as typed ``contents`` or ``raw_input_contents``; outputs go back as
``raw_output_contents``, as Triton answers. Messages are generated from Triton's
``grpc_service.proto`` into ``contract.protos.inference`` (byte-identical to tritonclient's).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from contract import triton
from contract.errors import InvalidInput, NotFound, Unimplemented
from contract.protos.inference import grpc_service_pb2 as pb
from serving.core.dataplane import DataPlane
from serving.core.request import InferRequest, InferResponse, Output, Tensor
from serving.core.runtime import ModelRuntime
from serving.transport.grpc import guarded_handler, guarded_stream_handler, unimplemented_handler
from serving.transport.restricted import Restricted, guard_grpc

from . import common as v2

SERVICE = "inference.GRPCInferenceService"
# Requests of one ModelStreamInfer stream in flight at once; the client's next ones wait (flow control).
STREAM_IN_FLIGHT = 64

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
    """inference.GRPCInferenceService over the data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.engine = plane.engine

    def _model(self, name: str, version: str) -> ModelRuntime:
        return self.plane.model(name, version or None)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.engine.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        self._model(request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**v2.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        meta = v2.model_metadata(self.plane, self._model(request.name, request.version))
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> Any:
        rt = self._model(request.name, request.version)
        config = v2.model_config(self.plane, rt)
        message = triton.config_message(config)
        return pb.ModelConfigResponse(config=message)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self.infer(request)

    async def infer(self, request: pb.ModelInferRequest, protocol: str = "v2-grpc") -> pb.ModelInferResponse:
        """One inference, for ModelInfer and each request of ModelStreamInfer."""
        front = self.plane.tracer.front(protocol)  # None unless the trace extension is on
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
        tensors = []
        for i, tensor in enumerate(request.inputs):
            in_region = v2.shm_input(self.plane, tensor.name, tensor.datatype, list(tensor.shape), _values(tensor.parameters))
            if in_region is not None:
                tensors.append(in_region)
                continue
            if raw:
                if tensor.HasField("contents"):
                    raise InvalidInput(f"input {tensor.name!r} has both contents and raw_input_contents; send one")
                tensors.append(v2.raw_tensor(tensor.name, tensor.datatype, list(tensor.shape), raw[i]))
                continue
            field = _CONTENTS_FIELD.get(tensor.datatype)
            values = getattr(tensor.contents, field) if field else None
            if not values:
                raise InvalidInput(
                    f"input {tensor.name!r} has no data: send contents.{field or '<datatype>_contents'} or raw_input_contents"
                )
            tensors.append(Tensor(tensor.name, tensor.datatype, tuple(tensor.shape), np.asarray(values)))
        outputs = [_requested(o) for o in request.outputs] or None
        answer = await self.plane.infer(
            InferRequest(tensors, request.model_name, request.model_version or None, outputs=outputs, id=request.id), front
        )
        if front is None:
            return self.encode(request, answer)
        try:
            response = self.encode(request, answer)
        except Exception as e:
            front.finish(e)
            raise
        front.finish()
        return response

    def encode(self, request: pb.ModelInferRequest, answer: InferResponse) -> pb.ModelInferResponse:
        rt = answer.model
        response = pb.ModelInferResponse(model_name=rt.store_name, model_version=str(rt.version_number), id=request.id)
        shared = {o.name: target for o in request.outputs if (target := v2.shm_output(_values(o.parameters), o.name))}
        for out in answer.requested:
            arr = answer.outputs[out.name]
            if out.name in shared:  # written to its region; an empty entry keeps raw_output_contents aligned
                datatype, params = v2.write_shm_output(self.plane, shared[out.name], out.name, arr)
                entry = response.outputs.add(name=out.name, datatype=datatype, shape=arr.shape)
                for key, value in params.items():
                    if isinstance(value, str):
                        entry.parameters[key].string_param = value
                    else:
                        entry.parameters[key].int64_param = int(value)
                response.raw_output_contents.append(b"")
                continue
            datatype, data = v2.raw_bytes(arr)
            response.outputs.add(name=out.name, datatype=datatype, shape=arr.shape)
            response.raw_output_contents.append(data)
        return response

    async def stream_answer(self, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
        return pb.ModelStreamInferResponse(infer_response=await self.infer(request, "v2-grpc-stream"))

    @staticmethod
    def stream_error(request: pb.ModelInferRequest | None, message: str) -> pb.ModelStreamInferResponse:
        """A failed stream request's answer: the error, and the request's id and model when it could be read."""
        if request is None:
            return pb.ModelStreamInferResponse(error_message=message)
        echo = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
        return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext) -> Any:
        stats = self.plane.statistics(request.name or None, request.version or None)
        return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

    async def SystemSharedMemoryStatus(self, request: pb.SystemSharedMemoryStatusRequest, context: grpc.aio.ServicerContext) -> Any:
        regions = v2.regions_status(self.plane, request.name or None)
        status = pb.SystemSharedMemoryStatusResponse()
        for r in regions:
            status.regions[r["name"]].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(**r))
        return status

    async def SystemSharedMemoryRegister(self, request: pb.SystemSharedMemoryRegisterRequest, context: grpc.aio.ServicerContext) -> Any:
        self.plane.shared_memory.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request: pb.SystemSharedMemoryUnregisterRequest, context: grpc.aio.ServicerContext) -> Any:
        self.plane.shared_memory.unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request: pb.CudaSharedMemoryStatusRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.name:
            raise NotFound(
                f"no CUDA shared memory region {request.name[:100]!r} is registered (this server offers system shared memory only)"
            )
        return pb.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryUnregister(self, request: pb.CudaSharedMemoryUnregisterRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.CudaSharedMemoryUnregisterResponse()  # none can be registered here

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext) -> Any:
        rows = self.plane.control().repository_index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**r) for r in rows])

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.plane.control(change=True).load(request.model_name, _version_parameter(request.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.plane.control(change=True).unload(request.model_name, _version_parameter(request.parameters))
        return pb.RepositoryModelUnloadResponse()

    async def TraceSetting(self, request: pb.TraceSettingRequest, context: grpc.aio.ServicerContext) -> Any:
        tracer = self.plane.tracer
        model = self.plane.model(request.model_name).store_name if request.model_name else None
        answer = tracer.update(_trace_values(request.settings), model) if request.settings else tracer.current(model)
        response = pb.TraceSettingResponse()
        for key, value in answer.items():
            response.settings[key].value.extend(value if isinstance(value, list) else [value])
        return response

    async def LogSettings(self, request: pb.LogSettingsRequest, context: grpc.aio.ServicerContext) -> Any:
        logs = self.plane.logs
        answer = logs.update({key: _one_value(v) for key, v in request.settings.items()}) if request.settings else logs.current()
        response = pb.LogSettingsResponse()
        for key, value in answer.items():
            if isinstance(value, bool):
                response.settings[key].bool_param = value
            elif isinstance(value, int):
                response.settings[key].uint32_param = value
            else:
                response.settings[key].string_param = str(value)
        return response

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
            "ModelStatistics": pb.ModelStatisticsRequest,
            "SystemSharedMemoryStatus": pb.SystemSharedMemoryStatusRequest,
            "SystemSharedMemoryRegister": pb.SystemSharedMemoryRegisterRequest,
            "SystemSharedMemoryUnregister": pb.SystemSharedMemoryUnregisterRequest,
            "CudaSharedMemoryStatus": pb.CudaSharedMemoryStatusRequest,
            "CudaSharedMemoryUnregister": pb.CudaSharedMemoryUnregisterRequest,
            "RepositoryIndex": pb.RepositoryIndexRequest,
            "RepositoryModelLoad": pb.RepositoryModelLoadRequest,
            "RepositoryModelUnload": pb.RepositoryModelUnloadRequest,
            "TraceSetting": pb.TraceSettingRequest,
            "LogSettings": pb.LogSettingsRequest,
        }
        restricted = Restricted.parse(self.plane.settings.restricted_api)
        table = {name: guarded_handler(guard_grpc(restricted, name, getattr(self, name)), cls) for name, cls in implemented.items()}
        table["ModelStreamInfer"] = guarded_stream_handler(self.stream_answer, pb.ModelInferRequest, self.stream_error, STREAM_IN_FLIGHT)
        service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
        for method in service.methods:
            if method.name not in table:
                table[method.name] = unimplemented_handler(
                    Unimplemented(f"{method.name} is not offered by this server (see ServerMetadata extensions)")
                )
        return grpc.method_handlers_generic_handler(SERVICE, table)


def _values(parameters: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    out = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def _one_value(value: Any) -> Any:
    """A ``SettingValue`` (bool, uint32 or string) as a plain value; None when it holds none."""
    which = value.WhichOneof("parameter_choice")
    return None if which is None else getattr(value, which)


def _trace_values(settings: Any) -> dict[str, Any]:
    """Triton's gRPC trace settings (lists of strings) as the data plane takes them: an empty list
    clears a setting, ``trace_level`` stays a list, every other setting takes one value."""
    out: dict[str, Any] = {}
    for key, setting in settings.items():
        values = list(setting.value)
        if not values:
            out[key] = None
        elif key == "trace_level":
            out[key] = values
        elif len(values) == 1:
            out[key] = values[0]
        else:
            raise InvalidInput(f"trace setting {key[:60]!r} takes one value, got {len(values)}")
    return out


def _version_parameter(parameters: Any) -> str:
    """The ``version`` parameter of a load/unload request (our extension: one version), else ""."""
    if "version" not in parameters:
        return ""
    value = parameters["version"]
    which = value.WhichOneof("parameter_choice")
    if which not in ("string_param", "int64_param"):
        raise InvalidInput("parameters.version must be a version number or tag")
    return str(getattr(value, which))


def _requested(out: Any) -> Output:
    classes = out.parameters["classification"].int64_param if "classification" in out.parameters else 0
    return Output(out.name, int(classes))

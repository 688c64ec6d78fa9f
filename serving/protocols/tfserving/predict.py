"""TensorFlow Serving's gRPC API: ``tensorflow.serving.PredictionService`` over the engine; it only translates.

TensorProto -> rows -> ``engine.infer`` -> TensorProto. The messages come from the protos generated
into ``contract.protos``: no TensorFlow here. Served by the worker's gRPC server
(:mod:`serving.transport.grpc`) next to v2's GRPCInferenceService, so calls share batches with every protocol.
"""

from __future__ import annotations

import math
from typing import Any

import grpc

from contract import tensors
from contract.errors import InvalidInput, Unimplemented
from contract.protos.tensorflow.core.framework import tensor_shape_pb2
from contract.protos.tensorflow.core.protobuf import meta_graph_pb2
from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
from serving.core.dataplane import DataPlane
from serving.core.request import InferRequest, Output, Tensor, datatype_of
from serving.core.runtime import ModelRuntime
from serving.transport.grpc import Handler, guarded_handler, unimplemented_handler

SERVICE = "tensorflow.serving.PredictionService"
SIGNATURE_NAME = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


class PredictionServicer:
    """tensorflow.serving.PredictionService over the data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext) -> Any:
        front = self.plane.tracer.front("tfserving")  # None unless the trace extension is on
        model, version = self._model_ref(request.model_spec)
        inputs = [_tensor(name, proto) for name, proto in request.inputs.items()]
        wanted = [Output(name) for name in request.output_filter] or None
        answer = await self.plane.infer(InferRequest(inputs, model, version, outputs=wanted), front)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, answer.model)
        for name, arr in answer.outputs.items():
            response.outputs[name].CopyFrom(tensors.array_to_tensor_proto(arr))
        if front is not None:
            front.finish()
        return response

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
        rt = self.plane.model(*self._model_ref(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, rt)
        response.metadata["signature_def"].Pack(signature_def_map(rt.signature))
        return response

    @staticmethod
    def _model_ref(model_spec: Any) -> tuple[str, str | None]:
        """(name, version or label) of a ModelSpec; the signature must be the one models offer."""
        if model_spec.signature_name not in ("", SIGNATURE_NAME):
            raise InvalidInput(f"unknown signature {model_spec.signature_name!r}; models offer {SIGNATURE_NAME!r}")
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            return model_spec.name, str(model_spec.version.value)
        if choice == "version_label":
            label = model_spec.version_label
            if not label or label.isdigit():
                raise InvalidInput(f"version_label must be a label such as 'stable', got {label[:100]!r}")
            return model_spec.name, label
        return model_spec.name, None

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


def _tensor(name: str, proto: Any) -> Tensor:
    """A TensorProto as the data plane's tensor: its DataType as a datatype name, decoded once the header passed."""
    dtype = tensors.numpy_dtype(proto.dtype)
    datatype = datatype_of(dtype) if dtype is not None else tensors.dtype_name(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise InvalidInput(f"input {name!r}: tensor shape has unknown rank; send a fully defined shape")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    return Tensor(name, datatype, shape, lambda: tensors.tensor_proto_to_array(proto, math.prod(shape), fit=False))

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
from contract.errors import InvalidInput, PayloadTooLarge, Unimplemented
from contract.protos.tensorflow.core.framework import tensor_shape_pb2
from contract.protos.tensorflow.core.protobuf import meta_graph_pb2
from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
from serving.core.engine import Engine
from serving.core.runtime import ModelRuntime
from serving.protocols import codec
from serving.transport.grpc import Handler, guarded_handler, unimplemented_handler

SERVICE = "tensorflow.serving.PredictionService"
SIGNATURE_NAME = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


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

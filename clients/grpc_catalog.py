"""What the server serves, as its gRPC services tell it: the gRPC client's model catalog.

The v2 ``RepositoryIndex`` lists the ready models, each one's ``ModelConfig`` gives its task, kind, public
name, whether it is its task's default, its row limit (``max_batch_size``) and, for decoders, the largest
manifold side; TF Serving's ``GetModelMetadata`` gives its ``serving_default`` signature and the version
number served. Model arguments resolve here as the server resolves them (public or store name, or the
task's default), so nothing about the catalog or the limits is hard-coded in the client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidRequestError, NotFoundError, ServerError

SIGNATURE_NAME = "serving_default"
DECODER_INPUT = "z"

_DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_UINT8": "uint8",
    "DT_INT8": "int8",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_STRING": "object",  # signature.json (numpy) calls a BYTES tensor so
}


# The tasks the client's methods serve, and what the server calls a model each route of that task takes.
TASKS = ("classification", "generation", "encoding")
ROUTE_KINDS = {"classification": "classifier", "generation": "decoder", "encoding": "encoder"}


def spec_version(spec: Any) -> str:
    if spec.version_label:
        return spec.version_label
    if spec.HasField("version"):
        return str(spec.version.value)
    return ""


def _tensor_infos(infos: Any) -> list[dict[str, Any]]:
    from contract.protos.tensorflow.core.framework import types_pb2

    out = []
    for name in sorted(infos):
        info = infos[name]
        dtype = types_pb2.DataType.Name(info.dtype)
        shape = None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
        out.append({"name": name, "dtype": _DTYPE_NAMES.get(dtype, dtype.lower()), "shape": shape})
    return out


def row_bytes(signature: dict[str, Any], name: str, kind: str) -> int:
    """Bytes of one batch row of tensor ``name`` (0 when the signature does not say)."""
    for tensor in signature.get(kind, ()):
        shape = tensor.get("shape")
        if tensor["name"] == name and shape and all(d > 0 for d in shape[1:]):
            itemsize = np.dtype(tensor["dtype"]).itemsize if tensor["dtype"] != "string" else 0
            return int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return 0


def _reported(params: dict[str, str]) -> dict[str, Any]:
    """What a model config's parameters report beyond the catalog: ``metrics`` (JSON) and ``provider``."""
    out: dict[str, Any] = {}
    try:
        metrics = json.loads(params["metrics"]) if params.get("metrics") else None
    except ValueError:
        metrics = None
    if isinstance(metrics, dict):
        out["metrics"] = metrics
    if params.get("provider"):
        out["provider"] = params["provider"]
    return out


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class Catalog:
    """The served models over gRPC, read on first use and again when a name is not in it; signatures and
    configs are cached per model. ``call(method, request)`` makes one RPC (with the client's retries);
    ``prediction()`` and ``inference()`` give the PredictionService and GRPCInferenceService stubs."""

    def __init__(self, call: Callable[[Callable[..., Any], Any], Any], prediction: Callable[[], Any], inference: Callable[[], Any]) -> None:
        self._call = call
        self._stub = prediction
        self._v2 = inference
        self.entries: list[dict[str, Any]] | None = None
        self.kinds: dict[str, str] = {}  # store name -> the server's kind (classifier, ensemble, decoder, encoder)
        self._signatures: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, Any] = {}

    def signature(self, store: str) -> dict[str, Any]:
        """The model's ``serving_default`` signature (inputs/outputs with dtype and shape), cached."""
        if store not in self._signatures:
            from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest()
            request.model_spec.name = store
            request.metadata_field.append("signature_def")
            response = self._call(self._stub().GetModelMetadata, request)
            sigs = get_model_metadata_pb2.SignatureDefMap()
            if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(sigs):
                raise ServerError(f"GetModelMetadata for {store!r} returned no signature_def")
            if SIGNATURE_NAME not in sigs.signature_def:
                raise ServerError(f"model {store!r} has no {SIGNATURE_NAME!r} signature")
            sig = sigs.signature_def[SIGNATURE_NAME]
            self._signatures[store] = {
                "signature_name": SIGNATURE_NAME,
                "method_name": sig.method_name,
                "inputs": _tensor_infos(sig.inputs),
                "outputs": _tensor_infos(sig.outputs),
                "version": spec_version(response.model_spec),
            }
        return self._signatures[store]

    def config(self, store: str) -> Any:
        """The model's v2 ``ModelConfig`` (its row limit, kind and limits in ``parameters``), cached like signatures."""
        if store not in self._configs:
            from contract.protos.inference import grpc_service_pb2 as v2

            self._configs[store] = self._call(self._v2().ModelConfig, v2.ModelConfigRequest(name=store)).config
        return self._configs[store]

    def row_limit(self, store: str) -> int | None:
        """The most rows one request for the model may carry (its config's ``max_batch_size``; None: not reported)."""
        limit = int(self.config(store).max_batch_size)
        return limit if limit > 0 else None

    def manifold_limit(self, store: str) -> int | None:
        """The decoder's largest manifold side (its config's ``max_manifold_n``; None: not reported)."""
        parameters = self.config(store).parameters
        raw = parameters["max_manifold_n"].string_value if "max_manifold_n" in parameters else ""
        return int(raw) if raw.isdigit() else None

    def latent_dim(self, store: str) -> int:
        for tensor in self.signature(store)["inputs"]:
            if tensor["name"] == DECODER_INPUT and tensor["shape"] and len(tensor["shape"]) == 2:
                return int(tensor["shape"][1])
        raise ServerError(f"the signature of {store!r} does not give the size of its {DECODER_INPUT!r} input")

    def encoder(self, model: str | None) -> dict[str, Any]:
        """The encoder a VAE argument means (none: the default decoder's VAE), as the encode route resolves it."""
        return self.entry(self.entry(None, "generation")["name"] if model is None else model, "encoding")

    def models(self) -> list[dict[str, Any]]:
        """The served classifiers, decoders and encoders, from the server's repository index and model configs
        (the v2 service on the same port), with the signature ``GetModelMetadata`` gives; ``metrics`` and
        ``provider`` where the model config's parameters carry them."""
        from contract.protos.inference import grpc_service_pb2 as v2

        index = self._call(self._v2().RepositoryIndex, v2.RepositoryIndexRequest(ready=True))
        found = []
        for store in sorted({m.name for m in index.models}):
            config = self._call(self._v2().ModelConfig, v2.ModelConfigRequest(name=store)).config
            self._configs[store] = config
            params = {key: value.string_value for key, value in config.parameters.items()}
            if params.get("task") not in TASKS:
                continue
            self.kinds[store] = params.get("kind") or ROUTE_KINDS[params["task"]]
            self._signatures.pop(store, None)  # a listing should show the versions served now
            signature = dict(self.signature(store))
            version = signature.pop("version")
            entry = {
                "name": params.get("public_name") or store,
                "store_name": store,
                "version_number": int(version) if version.isdigit() else None,
                "task": params["task"],
                "signature": signature,
                "default": params.get("default") == "true",
            }
            entry.update(_reported(params))
            found.append(entry)
        self.entries = found
        return found

    def entry(self, model: str | None, task: str) -> dict[str, Any]:
        """The catalog entry a model argument means: its public or store name, or the task's default.
        A model of another task is refused as the server refuses it; a name the catalog lacks goes to the
        server as it is: the server answers for it (NOT_FOUND)."""
        for refresh in (False, True):
            if self.entries is None or refresh:
                self.models()
            assert self.entries is not None
            for entry in self.entries:
                if entry["task"] == task and (entry["default"] if model is None else model in (entry["name"], entry["store_name"])):
                    return entry
        if model is None:
            raise NotFoundError(f"the server has no default {task} model")
        others = [e for e in self.entries or () if model in (e["name"], e["store_name"])]
        if others:
            wanted = ROUTE_KINDS[task]
            names = ", ".join(sorted(e["name"] for e in self.entries or () if e["task"] == task)) or "none"
            kind = self.kinds.get(others[0]["store_name"], ROUTE_KINDS[others[0]["task"]])
            raise InvalidRequestError(f"model {model[:100]!r} is {_a(kind)}, not {_a(wanted)}; {wanted}s: {names}")
        return {"name": model, "store_name": model, "task": task}

"""The gRPC client: TensorFlow Serving's PredictionService plus the standard health service.

Inference goes through ``Predict``; what the server serves (the catalog, public names, each task's
default, each model's row limit and largest manifold) comes from the server's Open Inference Protocol
service on the same port (``RepositoryIndex`` and ``ModelConfig``), so nothing about the model catalog
or the server's limits is hard-coded here. Each method keeps the limits the HTTP client meets and
fails with the same error class and message for the same mistake. The messages come from
``contract.protos`` (generated from TF Serving's and Triton's protos, no TensorFlow), imported on the
first RPC that needs them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np

from .base import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Client,
    PathOrBytes,
    Prediction,
    chunks,
    image_batch,
    latent_batch,
    read_image,
    unit_float,
)
from .errors import ClientError, InvalidRequestError, NotFoundError, ServerError, class_for_http_status, error_from_grpc
from .retry import RetryPolicy

DEFAULT_TARGET = "127.0.0.1:8500"
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
# Room for the protobuf framing around the tensor bytes when splitting big requests.
MESSAGE_HEADROOM = 64 << 10
# The server's default decompression-bomb guard for uploads (SERVING_MAX_IMAGE_PIXELS).
DEFAULT_MAX_IMAGE_PIXELS = 16_000_000

SIGNATURE_NAME = "serving_default"
CLASSIFIER_INPUT, CLASSIFIER_OUTPUT = "images", "probabilities"
DECODER_INPUT, DECODER_OUTPUT = "z", "images"

_DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_UINT8": "uint8",
    "DT_INT8": "int8",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}


# The tasks the client's methods serve (the server also has encoders, which this client does not call).
TASKS = ("classification", "generation")
# The server's manifold rule 0 < scale <= 100 (the model config reports n's limit, not this one).
MAX_MANIFOLD_SCALE = 100.0


def _spec_version(spec: Any) -> str:
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


def _row_bytes(signature: dict[str, Any], name: str, kind: str) -> int:
    """Bytes of one batch row of tensor ``name`` (0 when the signature does not say)."""
    for tensor in signature.get(kind, ()):
        shape = tensor.get("shape")
        if tensor["name"] == name and shape and all(d > 0 for d in shape[1:]):
            itemsize = np.dtype(tensor["dtype"]).itemsize if tensor["dtype"] != "string" else 0
            return int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return 0


def _local_error(e: Exception) -> ClientError:
    # Local preprocessing raises contract.errors classes; map them as the server would.
    from contract.errors import http_status

    return class_for_http_status(http_status(e))(str(e))


def _query_list(texts: Sequence[str], kind: type, what: str) -> list[Any]:
    """A list parameter as the HTTP route reads it: the HTTP client's comma-joined text, parsed part by part."""
    raw = ",".join(texts)
    try:
        return [kind(part) for part in raw.split(",")]
    except ValueError:
        raise InvalidRequestError(f"{what} must be comma-separated {kind.__name__}s, got {raw[:100]!r}") from None


def manifold_grid(
    n: int,
    scale: float,
    latent_dim: int,
    dims: Sequence[int],
    fixed: Sequence[float] | None,
    max_n: int | None,
    model: str,
) -> np.ndarray:
    """The n*n latent points of a manifold, checked as the server checks ``GET /v1/generate/manifold`` (the
    same order, classes and messages): n within 1..``max_n`` (the decoder's ``max_manifold_n``; None: not
    reported), scale, the latent space, dims, fixed. ``model`` is the public name the messages use."""
    from contract.images import latent_grid

    if n < 1:
        raise InvalidRequestError(f"n must be at least 1, got {n}")
    if max_n is not None and n > max_n:
        raise InvalidRequestError(f"n must be at most {max_n}, got {n}")
    if not math.isfinite(scale) or not 0 < scale <= MAX_MANIFOLD_SCALE:
        raise InvalidRequestError(f"scale must be a number in (0, {MAX_MANIFOLD_SCALE:g}], got {scale:g}")
    if latent_dim < 2:
        raise InvalidRequestError(f"a manifold needs a latent space of at least 2 dimensions; {model} has {latent_dim}")
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < latent_dim for d in dims):
        raise InvalidRequestError(f"dims must be two distinct indices in 0..{latent_dim - 1}, got {','.join(str(d) for d in dims)!r}")
    if fixed is not None and (len(fixed) != latent_dim or not all(math.isfinite(v) for v in fixed)):
        raise InvalidRequestError(f"fixed must be {latent_dim} finite numbers (one per latent dim of {model}), got {len(fixed)}")
    return latent_grid(n, scale, latent_dim, (dims[0], dims[1]), fixed)


class GRPCClient(Client):
    """Client for the TF-Serving-compatible gRPC API; model arguments are public names (``lstm``, ``vae2``)
    or store names, as :meth:`models` lists them.

    Without a model, each task uses the server's default (what :meth:`models` marks). The limits are the
    HTTP client's: ``classify``, ``classify_bulk`` and ``generate`` split their rows into Predict calls of
    at most ``max_batch_rows`` rows, as the HTTP client splits its requests; ``sample`` asks for all
    ``n`` rows at once, as ``POST /v1/generate/sample`` does, so the server's row limit decides; and
    ``manifold`` refuses an ``n`` over the decoder's ``max_manifold_n`` with the HTTP route's message,
    then decodes the grid in calls of at most the model's row limit (its config's ``max_batch_size``).
    Every call also fits ``max_message_bytes`` both ways. ``Prediction.version`` is TF Serving's numeric
    version (``version_number`` in ``GET /v1/models``). ``sleep`` exists for tests (a fake clock).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        backoff: float = DEFAULT_BACKOFF,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_message_bytes <= MESSAGE_HEADROOM:
            raise ValueError(f"max_message_bytes must exceed {MESSAGE_HEADROOM}, got {max_message_bytes}")
        self.target = target
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, base=backoff)
        self.max_message_bytes = max_message_bytes
        self.max_image_pixels = max_image_pixels
        self.max_batch_rows = max_batch_rows
        self._sleep = sleep
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._prediction_stub: Any = None
        self._inference_stub: Any = None
        self._signatures: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, Any] = {}
        self._catalog: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"GRPCClient({self.target!r})"

    def close(self) -> None:
        self._channel.close()

    # -- transport -------------------------------------------------------------------------

    def _stub(self) -> Any:
        if self._prediction_stub is None:
            from contract.protos.tensorflow_serving.apis import prediction_service_pb2_grpc

            self._prediction_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        return self._prediction_stub

    def _v2(self) -> Any:
        if self._inference_stub is None:
            from contract.protos.inference import grpc_service_pb2_grpc

            self._inference_stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._inference_stub

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        def once() -> Any:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code().name if isinstance(e, grpc.Call) else "UNKNOWN"
                details = e.details() if isinstance(e, grpc.Call) else str(e)
                raise error_from_grpc(code, details) from e

        return self.retry.call(once, sleep=self._sleep)

    def _signature(self, store: str) -> dict[str, Any]:
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
                "version": _spec_version(response.model_spec),
            }
        return self._signatures[store]

    def _config(self, store: str) -> Any:
        """The model's v2 ``ModelConfig`` (its row limit, kind and limits in ``parameters``), cached like signatures."""
        if store not in self._configs:
            from contract.protos.inference import grpc_service_pb2 as v2

            self._configs[store] = self._call(self._v2().ModelConfig, v2.ModelConfigRequest(name=store)).config
        return self._configs[store]

    def _row_limit(self, store: str) -> int | None:
        """The most rows one request for the model may carry (its config's ``max_batch_size``; None: not reported)."""
        limit = int(self._config(store).max_batch_size)
        return limit if limit > 0 else None

    def _manifold_limit(self, store: str) -> int | None:
        """The decoder's largest manifold side (its config's ``max_manifold_n``; None: not reported)."""
        parameters = self._config(store).parameters
        raw = parameters["max_manifold_n"].string_value if "max_manifold_n" in parameters else ""
        return int(raw) if raw.isdigit() else None

    def _request(self, store: str) -> Any:
        from contract.protos.tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = store
        request.model_spec.signature_name = SIGNATURE_NAME
        return request

    def _refuse_rows(self, store: str, input_name: str, shape: tuple[int, ...]) -> None:
        """Raise the server's own answer to ``shape`` rows, sent as the declared shape alone (no values).

        The server checks a tensor's declared shape (row count and row limit included) before it reads
        a value, as it checks ``n`` of ``POST /v1/generate/sample``: so the answer is the message HTTP
        gets, and nothing of that size is drawn or sent here.
        """
        from contract.protos.tensorflow.core.framework import types_pb2

        request = self._request(store)
        tensor = request.inputs[input_name]
        tensor.dtype = types_pb2.DT_FLOAT
        for size in shape:
            tensor.tensor_shape.dim.add(size=size)
        self._call(self._stub().Predict, request)
        raise ServerError(f"Predict on {store!r} accepted shape {list(shape)} without any values")

    def _predict(
        self, store: str, input_name: str, array: np.ndarray, output_name: str, out_row_bytes: int = 0, max_rows: int | None = None
    ) -> tuple[np.ndarray, str]:
        """One Predict per chunk of at most ``max_rows`` rows (None: no split but the message size's) that fits a
        message both ways; outputs concatenated."""
        from contract.tensors import array_to_tensor_proto, tensor_proto_to_array

        fit = (self.max_message_bytes - MESSAGE_HEADROOM) // max(1, array[0].nbytes, out_row_bytes)
        parts, version = [], ""
        for rows in chunks(len(array), fit if max_rows is None else min(max_rows, fit)):
            chunk = np.ascontiguousarray(array[rows])
            request = self._request(store)
            request.inputs[input_name].CopyFrom(array_to_tensor_proto(chunk))
            response = self._call(self._stub().Predict, request)
            if output_name not in response.outputs:
                raise ServerError(f"Predict on {store!r} returned no {output_name!r} output")
            part = tensor_proto_to_array(response.outputs[output_name])
            if len(part) != len(chunk):
                raise ServerError(f"sent {len(chunk)} rows to {store!r}, got {len(part)} back")
            parts.append(part)
            version = _spec_version(response.model_spec)
        return np.concatenate(parts), version

    # -- classification --------------------------------------------------------------------

    def _classify(self, images: Any, model: str | None) -> tuple[np.ndarray, str, str]:
        entry = self._entry(model, "classification")
        batch = unit_float(image_batch(images))
        # As the HTTP client splits classify (and classify_bulk, the bulk route's body size aside).
        probs, version = self._predict(entry["store_name"], CLASSIFIER_INPUT, batch, CLASSIFIER_OUTPUT, max_rows=self.max_batch_rows)
        return probs.astype(np.float32, copy=False), entry["name"], version

    def classify(self, images: Any, model: str | None = None) -> list[Prediction]:
        probs, name, version = self._classify(images, model)
        return [Prediction(int(np.argmax(row)), row, name, version) for row in probs]

    def classify_image(self, image: PathOrBytes, model: str | None = None) -> Prediction:
        from contract.errors import ServingError
        from contract.images import decode_image, mnist_preprocess

        data, _filename = read_image(image)
        try:
            img = decode_image(data, self.max_image_pixels)
            try:
                pixels = mnist_preprocess(img)
            finally:
                img.close()
        except ServingError as e:
            raise _local_error(e) from e
        return self.classify(pixels[np.newaxis], model)[0]

    def classify_bulk(self, images: Any, model: str | None = None) -> np.ndarray:
        return self._classify(images, model)[0]

    # -- generation ------------------------------------------------------------------------

    def _decode(self, store: str, z: np.ndarray, max_rows: int | None) -> np.ndarray:
        signature = self._signature(store)
        out_row_bytes = _row_bytes(signature, DECODER_OUTPUT, "outputs")
        images, _version = self._predict(store, DECODER_INPUT, z, DECODER_OUTPUT, out_row_bytes, max_rows)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        return images.astype(np.float32, copy=False)

    def _latent_dim(self, store: str) -> int:
        for tensor in self._signature(store)["inputs"]:
            if tensor["name"] == DECODER_INPUT and tensor["shape"] and len(tensor["shape"]) == 2:
                return int(tensor["shape"][1])
        raise ServerError(f"the signature of {store!r} does not give the size of its {DECODER_INPUT!r} input")

    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        points = latent_batch(z)
        # As the HTTP client splits POST /v1/generate.
        return self._decode(self._entry(model, "generation")["store_name"], points, self.max_batch_rows)

    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        from contract.errors import ServingError
        from contract.images import sample_latent

        store = self._entry(model, "generation")["store_name"]
        latent = self._latent_dim(store)
        limit = self._row_limit(store)
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and (n < 1 or (limit is not None and n > limit)):
            # HTTP sends n and the server refuses it; ask the server about n rows the same way.
            self._refuse_rows(store, DECODER_INPUT, (int(n), latent))
        try:
            z = sample_latent(n, latent, seed)
        except ServingError as e:
            raise _local_error(e) from e
        # One request, as POST /v1/generate/sample is one: max_batch_rows does not split it.
        return self._decode(store, z, None)

    def manifold(
        self,
        model: str | None = None,
        n: int = 30,
        scale: float = 2.0,
        dims: Sequence[int] = (0, 1),
        fixed: Sequence[float] | None = None,
    ) -> bytes:
        from contract.errors import ServingError
        from contract.images import tile, to_png

        # What the HTTP client sends and the route reads first: dims and fixed as comma-separated text.
        varied = _query_list([str(d) for d in dims], int, "dims")
        values = None if fixed is None else _query_list([repr(float(v)) for v in fixed], float, "fixed")
        entry = self._entry(model, "generation")
        store = entry["store_name"]
        try:
            z = manifold_grid(n, float(scale), self._latent_dim(store), varied, values, self._manifold_limit(store), entry["name"])
        except ServingError as e:
            raise _local_error(e) from e
        # The route decodes the grid in one batch on the server; over Predict it takes calls within the row limit.
        rows = min(limit for limit in (self._row_limit(store), self.max_batch_rows) if limit is not None)
        return to_png(tile(self._decode(store, z, rows), ncols=n))

    # -- discovery -------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The served classifiers and generators, from the server's repository index and model configs
        (the v2 service on the same port), with the signature ``GetModelMetadata`` gives."""
        from contract.protos.inference import grpc_service_pb2 as v2

        index = self._call(self._v2().RepositoryIndex, v2.RepositoryIndexRequest(ready=True))
        found = []
        for store in sorted({m.name for m in index.models}):
            config = self._call(self._v2().ModelConfig, v2.ModelConfigRequest(name=store)).config
            self._configs[store] = config
            params = {key: value.string_value for key, value in config.parameters.items()}
            if params.get("task") not in TASKS:
                continue
            self._signatures.pop(store, None)  # a listing should show the versions served now
            signature = dict(self._signature(store))
            version = signature.pop("version")
            found.append(
                {
                    "name": params.get("public_name") or store,
                    "store_name": store,
                    "version": version,
                    "version_number": int(version) if version.isdigit() else None,
                    "task": params["task"],
                    "signature": signature,
                    "default": params.get("default") == "true",
                }
            )
        self._catalog = found
        return found

    def _entry(self, model: str | None, task: str) -> dict[str, Any]:
        """The catalog entry a model argument means: its public or store name, or the task's default.
        A name the catalog lacks goes to the server as it is: the server answers for it (NOT_FOUND)."""
        for refresh in (False, True):
            if self._catalog is None or refresh:
                self.models()
            assert self._catalog is not None
            for entry in self._catalog:
                if entry["task"] == task and (entry["default"] if model is None else model in (entry["name"], entry["store_name"])):
                    return entry
        if model is not None:
            return {"name": model, "store_name": model, "task": task}
        raise NotFoundError(f"the server has no default {task} model")

    def health(self) -> dict[str, bool]:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            response = health_pb2_grpc.HealthStub(self._channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            # UNAVAILABLE / DEADLINE_EXCEEDED: nothing answered. Any other status came from a live server.
            live = code not in (None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return {"live": live, "ready": False}
        return {"live": True, "ready": response.status == health_pb2.HealthCheckResponse.SERVING}

"""The gRPC client: TensorFlow Serving's PredictionService plus the standard health service.

Inference goes through ``Predict``; what the server serves (the catalog, public names, each task's
default, each model's row limit and largest manifold) comes from the server's Open Inference Protocol
service on the same port (``RepositoryIndex`` and ``ModelConfig``), so nothing about the model catalog
or the server's limits is hard-coded here. Each method keeps the limits the HTTP client meets and
fails with the same error class and message for the same mistake. Routes that are several model calls
on the server (manifold, reconstruct, interpolate) are composed here from the same model calls
(:mod:`clients.composite`); what no model call gives (the plots, an ensemble's members, the manifold's
axes) raises :class:`~clients.errors.NotOfferedError`. The messages come from ``contract.protos``
(generated from TF Serving's and Triton's protos, no TensorFlow), imported on the first RPC that needs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np

from contract.vae import interpolation_path, kl_divergence, reconstruction_loss

from .base import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Classification,
    Client,
    Encoding,
    Images,
    Interpolation,
    PathOrBytes,
    Prediction,
    Reconstruction,
    chunks,
    image_batch,
    is_picture,
    latent_batch,
    points,
    read_image,
    unit_float,
)
from .composite import check_interpolation, manifold_grid, query_list, reconstruction_png
from .errors import (
    ClientError,
    ServerError,
    class_for_http_status,
    error_from_grpc,
    not_offered_over_grpc,
)
from .grpc_catalog import DECODER_INPUT, SIGNATURE_NAME, Catalog, row_bytes, spec_version
from .retry import RetryPolicy

DEFAULT_TARGET = "127.0.0.1:8500"
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
# Room for the protobuf framing around the tensor bytes when splitting big requests.
MESSAGE_HEADROOM = 64 << 10
# The server's default decompression-bomb guard for uploads (SERVING_MAX_IMAGE_PIXELS).
DEFAULT_MAX_IMAGE_PIXELS = 16_000_000

CLASSIFIER_INPUT, CLASSIFIER_OUTPUT = "images", "probabilities"
# What the server judges of each classified image (serving/core/verdict.py), next to the probabilities.
VERDICT_OUTPUTS = ("confidence", "digit", "reason")
DECODER_OUTPUT = "images"
ENCODER_INPUT, ENCODER_OUTPUTS = "images", ("z_mean", "z_log_var")


def _local_error(e: Exception) -> ClientError:
    # Local preprocessing raises contract.errors classes; map them as the server would.
    from contract.errors import http_status

    return class_for_http_status(http_status(e))(str(e))


class GRPCClient(Client):
    """Client for the TF-Serving-compatible gRPC API; model arguments are public names (``lstm``, ``vae2``)
    or store names, as :meth:`models` lists them.

    Without a model, each task uses the server's default (what :meth:`models` marks). The limits are the
    HTTP client's: ``classify``, ``classify_bulk`` and ``generate`` split their rows into Predict calls of
    at most ``max_batch_rows`` rows, as the HTTP client splits its requests; ``sample`` asks for all
    ``n`` rows at once, as ``POST /v1/generate/sample`` does, so the server's row limit decides; and
    ``manifold`` refuses an ``n`` over the decoder's ``max_manifold_n`` with the HTTP route's message,
    then decodes the grid in calls of at most the model's row limit (its config's ``max_batch_size``).
    ``encode`` and ``reconstruct`` split like ``classify``; ``reconstruct_png`` and ``interpolate*`` are
    one encoder call each, as their routes are one request. Every call also fits ``max_message_bytes``
    both ways. Versions are TF Serving's numbers (``version_number`` in ``GET /v1/models``), as the
    HTTP client reports them. ``sleep`` exists for tests (a fake clock).
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
        # What the server serves, read through this client's calls (and the stubs tests may replace).
        self.catalog = Catalog(lambda method, request: self._call(method, request), lambda: self._stub(), lambda: self._v2())

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
        self,
        store: str,
        input_name: str,
        array: np.ndarray,
        output_names: Sequence[str],
        out_row_bytes: int = 0,
        max_rows: int | None = None,
    ) -> tuple[list[np.ndarray], str]:
        """One Predict per chunk of at most ``max_rows`` rows (None: no split but the message size's) that fits a
        message both ways; each output concatenated, and the version number that answered."""
        from contract.tensors import array_to_tensor_proto

        fit = (self.max_message_bytes - MESSAGE_HEADROOM) // max(1, array[0].nbytes, out_row_bytes)
        parts: list[list[np.ndarray]] = []
        version = ""
        for rows in chunks(len(array), fit if max_rows is None else min(max_rows, fit)):
            chunk = np.ascontiguousarray(array[rows])
            request = self._request(store)
            request.inputs[input_name].CopyFrom(array_to_tensor_proto(chunk))
            request.output_filter.extend(output_names)  # what to answer (a classifier's verdict only when named)
            response = self._call(self._stub().Predict, request)
            missing = [name for name in output_names if name not in response.outputs]
            if missing:
                raise ServerError(f"Predict on {store!r} returned no {missing[0]!r} output")
            outputs = [_output_array(response.outputs[name]) for name in output_names]
            if any(len(part) != len(chunk) for part in outputs):
                raise ServerError(f"sent {len(chunk)} rows to {store!r}, got {[len(part) for part in outputs]} back")
            parts.append(outputs)
            version = spec_version(response.model_spec)
        return [np.concatenate([p[i] for p in parts]) for i in range(len(output_names))], version

    def _rows_per_call(self, store: str) -> int:
        """Rows per Predict for work the server does in one batch: within the model's row limit and ``max_batch_rows``."""
        return min(limit for limit in (self.catalog.row_limit(store), self.max_batch_rows) if limit is not None)

    def _picture(self, image: PathOrBytes, garment: bool) -> np.ndarray:
        """One picture file as the server preprocesses an upload: a 1 x 28 x 28 float32 digit (or garment)."""
        from contract.errors import ServingError
        from contract.images import decode_image, fashion_preprocess, mnist_preprocess

        data, _filename = read_image(image)
        try:
            img = decode_image(data, self.max_image_pixels)
            try:
                pixels = fashion_preprocess(img) if garment else mnist_preprocess(img)
            finally:
                img.close()
        except ServingError as e:
            raise _local_error(e) from e
        return pixels[np.newaxis]

    # -- classification --------------------------------------------------------------------

    def _classify(self, images: Any, model: str | None, members: bool, verdict: bool = False) -> tuple[Classification, list[np.ndarray]]:
        """The probabilities (and with ``verdict`` the confidence, digit and reason arrays)."""
        if members:
            raise not_offered_over_grpc(
                "each ensemble member's answer (members=True)", "no model call says which models an ensemble averages"
            )
        entry = self.catalog.entry(model, "classification")
        batch = unit_float(image_batch(images))
        # As the HTTP client splits classify (and classify_bulk, the bulk route's body size aside).
        names = (CLASSIFIER_OUTPUT, *VERDICT_OUTPUTS) if verdict else (CLASSIFIER_OUTPUT,)
        (probs, *judged), version = self._predict(entry["store_name"], CLASSIFIER_INPUT, batch, names, max_rows=self.max_batch_rows)
        return Classification(probs.astype(np.float32, copy=False), entry["name"], version), judged

    def classify(self, images: Any, model: str | None = None, members: bool = False) -> list[Prediction]:
        answer, (confidence, digit, reason) = self._classify(images, model, members, verdict=True)
        return [
            Prediction(
                int(np.argmax(row)),
                row,
                answer.model,
                answer.version,
                confidence=float(confidence[i]),
                digit=bool(digit[i]),
                reason=reason[i].decode() or None,
            )
            for i, row in enumerate(answer.probabilities)
        ]

    def classify_image(self, image: PathOrBytes, model: str | None = None, members: bool = False) -> Prediction:
        pixels = self._picture(image, garment=False)
        return self.classify(pixels, model, members)[0]

    def classify_batch(self, images: Any, model: str | None = None, members: bool = False) -> Classification:
        return self._classify(images, model, members)[0]

    # -- generation ------------------------------------------------------------------------

    def _decode(self, store: str, z: np.ndarray, max_rows: int | None) -> tuple[np.ndarray, str]:
        signature = self.catalog.signature(store)
        out_row_bytes = row_bytes(signature, DECODER_OUTPUT, "outputs")
        (images,), version = self._predict(store, DECODER_INPUT, z, (DECODER_OUTPUT,), out_row_bytes, max_rows)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        return images.astype(np.float32, copy=False), version

    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        points = latent_batch(z)
        # As the HTTP client splits POST /v1/generate.
        return self._decode(self.catalog.entry(model, "generation")["store_name"], points, self.max_batch_rows)[0]

    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        from contract.errors import ServingError
        from contract.images import sample_latent

        store = self.catalog.entry(model, "generation")["store_name"]
        latent = self.catalog.latent_dim(store)
        limit = self.catalog.row_limit(store)
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and (n < 1 or (limit is not None and n > limit)):
            # HTTP sends n and the server refuses it; ask the server about n rows the same way.
            self._refuse_rows(store, DECODER_INPUT, (int(n), latent))
        try:
            z = sample_latent(n, latent, seed)
        except ServingError as e:
            raise _local_error(e) from e
        # One request, as POST /v1/generate/sample is one: max_batch_rows does not split it.
        return self._decode(store, z, None)[0]

    def manifold(
        self,
        model: str | None = None,
        n: int = 30,
        scale: float = 2.0,
        dims: Sequence[int] = (0, 1),
        fixed: Sequence[float] | None = None,
        axes: bool = False,
    ) -> bytes:
        from contract.errors import ServingError
        from contract.images import tile, to_png

        if axes:
            raise not_offered_over_grpc("a manifold with axes (axes=True)", "the server draws them")
        # What the HTTP client sends and the route reads first: dims and fixed as comma-separated text.
        varied = query_list([str(d) for d in dims], int, "dims")
        values = None if fixed is None else query_list([repr(float(v)) for v in fixed], float, "fixed")
        entry = self.catalog.entry(model, "generation")
        store = entry["store_name"]
        try:
            z = manifold_grid(
                n, float(scale), self.catalog.latent_dim(store), varied, values, self.catalog.manifold_limit(store), entry["name"]
            )
        except ServingError as e:
            raise _local_error(e) from e
        # The route decodes the grid in one batch on the server; over Predict it takes calls within the row limit.
        return to_png(tile(self._decode(store, z, self._rows_per_call(store))[0], ncols=n))

    # -- encode, reconstruct, interpolate: the routes' model calls, composed here ----------

    def _encode(self, encoder: dict[str, Any], pixels: np.ndarray, max_rows: int | None) -> tuple[np.ndarray, np.ndarray, str]:
        (z_mean, z_log_var), version = self._predict(encoder["store_name"], ENCODER_INPUT, pixels, ENCODER_OUTPUTS, max_rows=max_rows)
        return z_mean.astype(np.float32, copy=False), z_log_var.astype(np.float32, copy=False), version

    def _pixels(self, images: Images) -> np.ndarray:
        """Images as the encoder reads them: float32 N x 28 x 28 in [0, 1] (a picture file preprocessed as a garment)."""
        return self._picture(images, garment=True) if is_picture(images) else unit_float(image_batch(images))

    def encode(self, images: Images, model: str | None = None) -> Encoding:
        encoder = self.catalog.encoder(model)
        z_mean, z_log_var, version = self._encode(encoder, self._pixels(images), self.max_batch_rows)
        return Encoding(encoder["name"], version, z_mean, z_log_var)

    def _reconstruct(self, images: Images, model: str | None, max_rows: int | None) -> tuple[Reconstruction, np.ndarray]:
        """As ``POST /v1/reconstruct``: encode, decode each ``z_mean`` with the VAE's decoder, the losses; and the inputs."""
        encoder = self.catalog.encoder(model)
        decoder = self.catalog.entry(encoder["name"], "generation")
        inputs = self._pixels(images)
        z_mean, z_log_var, _version = self._encode(encoder, inputs, max_rows)
        decoded, version = self._decode(decoder["store_name"], z_mean, self._rows_per_call(decoder["store_name"]))
        x = inputs.reshape(decoded.shape)
        rec, kl = reconstruction_loss(x, decoded), kl_divergence(z_mean, z_log_var)
        return Reconstruction(encoder["name"], version, rec + kl, rec, kl, z_mean, decoded), x

    def reconstruct(self, images: Images, model: str | None = None) -> Reconstruction:
        return self._reconstruct(images, model, self.max_batch_rows)[0]

    def reconstruct_png(self, images: Images, model: str | None = None) -> bytes:
        # One request over HTTP: one encoder call here, so the server's row limit decides alike.
        result, inputs = self._reconstruct(images, model, None)
        return reconstruction_png(inputs, result.images)

    def _interpolate(self, z: Any, images: Any, steps: int, model: str | None) -> Interpolation:
        """As ``POST /v1/generate/interpolate``: its checks, the ends (or the two images' ``z_mean``), the path, decoded."""
        ends = None if z is None else points(z, "z")
        pair = None if images is None else image_batch(images)
        check_interpolation(ends, pair, steps)
        if pair is not None:
            encoder = self.catalog.encoder(model)
            decoder = self.catalog.entry(encoder["name"], "generation")
            ends = self._encode(encoder, unit_float(pair), None)[0]
        else:
            decoder = self.catalog.entry(model, "generation")
        assert ends is not None
        store = decoder["store_name"]
        if ends.shape[1] != self.catalog.latent_dim(store):
            # The route checks the two points against the decoder's rules: ask the server about them the same way.
            self._refuse_rows(store, DECODER_INPUT, tuple(ends.shape))
        path = interpolation_path(ends, steps)
        decoded, version = self._decode(store, path, self._rows_per_call(store))
        return Interpolation(decoder["name"], version, path, decoded)

    def interpolate(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> Interpolation:
        return self._interpolate(z, images, steps, model)

    def interpolate_png(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        from contract.images import tile, to_png

        decoded = self._interpolate(z, images, steps, model).images
        return to_png(tile(decoded, ncols=len(decoded)))

    def interpolate_gif(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        from contract.images import to_gif

        return to_gif(self._interpolate(z, images, steps, model).images)

    # -- plots: drawn by the server from training's record, which no model call gives --------

    def plot_clusters(self, model: str | None = None, dims: Sequence[int] = (0, 1)) -> bytes:
        raise not_offered_over_grpc("the label-cluster plot", "the server draws it from what training recorded")

    def plot_confusion(self, model: str | None = None) -> bytes:
        raise not_offered_over_grpc("the confusion-matrix plot", "the server draws it from what training recorded")

    # -- discovery -------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The served classifiers, decoders and encoders (see :meth:`Catalog.models`)."""
        return self.catalog.models()

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


def _output_array(proto: Any) -> np.ndarray:
    """An answer's TensorProto as an array; DT_STRING (the verdict's ``reason``) as bytes objects."""
    from contract.protos.tensorflow.core.framework import types_pb2
    from contract.tensors import tensor_proto_to_array

    if proto.dtype == types_pb2.DT_STRING:
        return np.array(list(proto.string_val), dtype=object)
    return tensor_proto_to_array(proto)

"""Locust users for the digits/clothes service: a realistic mix over HTTP and gRPC.

Run it through ``python -m loadtests run`` (starts the service, judges the SLOs), or
directly: ``locust -f loadtests/locustfile.py --host http://127.0.0.1:3000 --grpc-target 127.0.0.1:8500``.

Every user picks real MNIST test images; classifying users pick a random classifier among
the loaded ones (``GET /v1/models``) per request. Weights model a front-end-heavy mix:
mostly single-image JSON, some uploads and gRPC, a few generations, rare bulk and manifold calls.
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import User, between, events, task
from locust.contrib.fasthttp import FastHttpUser

from loadtests import workload

POOL = 500  # distinct images per body kind


class _Shared:
    """Catalog and pre-encoded bodies, built once per locust process before the run."""

    catalog: workload.Catalog | None = None
    images_json: list[str] = []
    uploads: list[tuple[bytes, str]] = []
    bulk: list[bytes] = []
    tensors: list[Any] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument("--grpc-target", default="", help="host:port of the TF-Serving gRPC front (empty: gRPC users idle)")
    parser.add_argument("--data-dir", default="", help="MNIST IDX folder (default $DATA_DIR or ../shared/datasets)")
    parser.add_argument("--bulk-rows", type=int, default=256, help="images per bulk .npy request")


@events.init.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    # On init, not test_start: locust's --run-time clock starts after init, so the few
    # seconds spent here (TF protos for gRPC, encoding bodies) do not eat the measured run.
    from contract.images import to_png

    options = environment.parsed_options
    if options.grpc_target:
        import grpc.experimental.gevent as grpc_gevent

        # gRPC's C core must yield to gevent, or one gRPC call blocks every other user.
        grpc_gevent.init_gevent()
    _Shared.catalog = workload.Catalog.fetch(environment.host)
    images = workload.mnist_test_images(options.data_dir or None, limit=max(POOL, options.bulk_rows * 4))
    pool = images[:POOL]
    _Shared.images_json = [workload.images_json(img) for img in pool]
    _Shared.uploads = [workload.multipart_png(to_png(img)) for img in pool]
    rows = max(1, options.bulk_rows)
    _Shared.bulk = [workload.npy_body(images[i * rows : (i + 1) * rows]) for i in range(max(1, len(images) // rows))]
    if options.grpc_target:
        from contract.tensors import array_to_tensor_proto  # imports the TF protos: only when gRPC users run

        _Shared.tensors = [array_to_tensor_proto((img[None] / 255.0).astype("float32")) for img in pool]


def _classifier() -> str:
    assert _Shared.catalog is not None
    return random.choice(_Shared.catalog.classifiers)


class ClassifyJsonUser(FastHttpUser):
    """``POST /v1/classify``: one real test image as JSON, random classifier."""

    weight = 10
    wait_time = between(0.2, 1.0)

    @task
    def classify(self) -> None:
        body = workload.classify_body(random.choice(_Shared.images_json), _classifier())
        with self.client.post(
            "/v1/classify", data=body, headers={"Content-Type": "application/json"}, name="/v1/classify", catch_response=True
        ) as r:
            if r.status_code == 200 and b'"predictions"' not in (r.content or b""):
                r.failure("200 without predictions")


class ClassifyImageUser(FastHttpUser):
    """``POST /v1/classify/image``: one PNG upload (multipart field ``image``)."""

    weight = 3
    wait_time = between(0.2, 1.0)

    @task
    def classify_image(self) -> None:
        body, content_type = random.choice(_Shared.uploads)
        self.client.post(
            f"/v1/classify/image?model={_classifier()}", data=body, headers={"Content-Type": content_type}, name="/v1/classify/image"
        )


class BulkClassifyUser(FastHttpUser):
    """``POST /v1/classify/batch``: a ``.npy`` of ``--bulk-rows`` images; answer N x 10 float32."""

    weight = 1
    wait_time = between(1.0, 3.0)

    @task
    def classify_batch(self) -> None:
        rows = self.environment.parsed_options.bulk_rows
        with self.client.post(
            f"/v1/classify/batch?model={_classifier()}",
            data=random.choice(_Shared.bulk),
            headers={"Content-Type": "application/octet-stream"},
            name="/v1/classify/batch",
            catch_response=True,
        ) as r:
            # .npy header (128 bytes for a 2-D float32 array) + rows x 10 float32
            if r.status_code == 200 and len(r.content or b"") < rows * 40:
                r.failure(f"answer too short for {rows} rows: {len(r.content or b'')} bytes")


class GenerateUser(FastHttpUser):
    """``POST /v1/generate``: one random z, PNG answer."""

    weight = 2
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        assert _Shared.catalog is not None
        self.rng = random.Random()
        self.models = sorted(_Shared.catalog.generators.items())

    @task
    def generate(self) -> None:
        model, latent_dim = random.choice(self.models)
        with self.client.post(
            "/v1/generate",
            data=workload.generate_body(model, latent_dim, self.rng),
            headers={"Content-Type": "application/json"},
            name="/v1/generate",
            catch_response=True,
        ) as r:
            if r.status_code == 200 and not (r.content or b"").startswith(b"\x89PNG"):
                r.failure("200 without a PNG")


class ManifoldUser(FastHttpUser):
    """``GET /v1/generate/manifold?model=vae2&n=30``: 900 decoded images tiled into one PNG."""

    weight = 1
    wait_time = between(1.0, 3.0)

    @task
    def manifold(self) -> None:
        assert _Shared.catalog is not None
        self.client.get(f"/v1/generate/manifold?model={_Shared.catalog.manifold_model}&n=30", name="/v1/generate/manifold")


class GrpcPredictUser(User):
    """TF-Serving ``PredictionService/Predict`` on the gRPC front: one image, random classifier (store name)."""

    weight = 3
    wait_time = between(0.2, 1.0)
    timeout_s = 10.0

    def on_start(self) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        target = self.environment.parsed_options.grpc_target
        if not target:
            raise RuntimeError("GrpcPredictUser needs --grpc-target host:port")
        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def predict(self) -> None:
        import grpc
        from tensorflow_serving.apis import predict_pb2

        assert _Shared.catalog is not None
        request = predict_pb2.PredictRequest()
        request.model_spec.name = random.choice(_Shared.catalog.classifier_store_names)
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(random.choice(_Shared.tensors))
        started_at, started = time.time(), time.perf_counter()
        response, exception, length = None, None, 0
        try:
            response = self.stub.Predict(request, self.timeout_s)
            length = response.ByteSize()
            if "probabilities" not in response.outputs:
                exception = RuntimeError("Predict answered without 'probabilities'")
        except grpc.RpcError as e:
            exception = e
        self.environment.events.request.fire(
            request_type="grpc",
            name="Predict",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            response=response,
            context={},
            exception=exception,
            start_time=started_at,
            url=None,
        )

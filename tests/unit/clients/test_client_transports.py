"""Retry and error mapping of both transports, with fake responses and a fake clock (no server)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from clients.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    NotOfferedError,
    ServerError,
    UnavailableError,
)
from clients.grpc import GRPCClient
from clients.http import HTTPClient

CLASSIFIED = {
    "model": "lstm",
    "version": "1700000000",
    "predictions": [
        {
            "label": 3,
            "probabilities": [0.0] * 3 + [1.0] + [0.0] * 6,
            "confidence": 0.25,
            "digit": False,
            "reason": "low-confidence",
            "detail": "confidence 0.25 is below 0.50",
        }
    ],
}


class Script:
    """An httpx handler that plays back responses (or raises transport errors) in order."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


def http_client(script: Script, sleeps: list[float], retries: int = 3) -> HTTPClient:
    return HTTPClient("http://test", retries=retries, backoff=0.1, transport=httpx.MockTransport(script), sleep=sleeps.append)


def unavailable() -> httpx.Response:
    return httpx.Response(503, json={"error": "model mnist-lstm is still loading", "type": "NotReady"})


def test_http_retries_503_then_succeeds() -> None:
    sleeps: list[float] = []
    script = Script(unavailable(), unavailable(), httpx.Response(200, json=CLASSIFIED))
    with http_client(script, sleeps) as client:
        [p] = client.classify(np.zeros((28, 28), np.uint8))
    assert (p.label, p.model, p.version) == (3, "lstm", "1700000000")
    assert len(script.requests) == 3
    assert sleeps == pytest.approx([0.1, 0.2])


def test_http_gives_up_on_503_after_the_retries() -> None:
    sleeps: list[float] = []
    script = Script(unavailable())
    with http_client(script, sleeps, retries=2) as client, pytest.raises(UnavailableError) as info:
        client.models()
    assert len(script.requests) == 3
    assert sleeps == pytest.approx([0.1, 0.2])
    assert info.value.status == 503 and info.value.message == "model mnist-lstm is still loading"


def test_http_retries_connection_errors() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("closed"), httpx.Response(200, json=CLASSIFIED))
    with http_client(script, sleeps) as client:
        assert client.classify(np.zeros((1, 28, 28), np.float32))[0].label == 3
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_http_connection_refused_ends_in_unavailable() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"))
    with http_client(script, sleeps, retries=3) as client, pytest.raises(UnavailableError):
        client.sample(4, 0)
    assert len(script.requests) == 4 and len(sleeps) == 3


@pytest.mark.parametrize(
    "response, cls",
    [
        (httpx.Response(400, json={"error": "images must have shape N x 28 x 28", "type": "InvalidInput"}), InvalidRequestError),
        (httpx.Response(413, json={"error": "at most 256 images rows per request", "type": "PayloadTooLarge"}), InvalidRequestError),
        (httpx.Response(415, json={"error": "wrong content type"}), InvalidRequestError),
        (httpx.Response(422, json={"error": "bad", "detail": [{"loc": ["body", "z"], "msg": "Field required"}]}), InvalidRequestError),
        (httpx.Response(404, json={"error": "unknown model 'nope'", "type": "ModelNotFound"}), NotFoundError),
        (httpx.Response(500, json={"error": "internal error; see the server log", "type": "InternalError"}), ServerError),
        (httpx.Response(504, json={"error": "deadline", "type": "DeadlineExceeded"}), DeadlineExceededError),
    ],
)
def test_http_errors_are_mapped_and_never_retried(response: httpx.Response, cls: type) -> None:
    sleeps: list[float] = []
    script = Script(response)
    with http_client(script, sleeps) as client, pytest.raises(cls) as info:
        client.generate([[0.0, 0.0]])
    assert type(info.value) is cls
    assert len(script.requests) == 1 and sleeps == []
    assert info.value.status == response.status_code
    assert info.value.message.startswith(response.json()["error"])


def test_http_read_timeout_is_a_deadline_and_not_retried() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ReadTimeout("slow"))
    with http_client(script, sleeps) as client, pytest.raises(DeadlineExceededError):
        client.classify_bulk(np.zeros((2, 28, 28), np.uint8))
    assert len(script.requests) == 1 and sleeps == []


def test_http_health_never_raises_or_retries() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"))
    with http_client(script, sleeps) as client:
        assert client.health() == {"live": False, "ready": False}
    assert len(script.requests) == 2 and sleeps == []

    script = Script(httpx.Response(200, text="ok"), unavailable())
    with http_client(script, sleeps) as client:
        assert client.health() == {"live": True, "ready": False}
    assert [r.url.path for r in script.requests] == ["/livez", "/readyz"]


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed unary call raises: an RpcError that is also a Call with a code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class FakeMethod:
    """Stands in for a stub's unary method: fails with the given codes in order, then answers."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.timeouts: list[float] = []

    def __call__(self, request: Any, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.codes:
            code = self.codes.pop(0)
            raise FakeRpcError(code, f"details of {code.name}")
        return "response"


@pytest.fixture
def grpc_client() -> Any:
    sleeps: list[float] = []
    # Creating a channel does not connect, so no server is needed here.
    client = GRPCClient("127.0.0.1:1", timeout=2.5, retries=3, backoff=0.1, sleep=sleeps.append)
    client.sleeps = sleeps
    yield client
    client.close()


def test_grpc_retries_unavailable_then_succeeds(grpc_client: Any) -> None:
    method = FakeMethod(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert grpc_client._call(method, object()) == "response"
    assert method.timeouts == [2.5, 2.5, 2.5]
    assert grpc_client.sleeps == pytest.approx([0.1, 0.2])


def test_grpc_gives_up_after_the_retries(grpc_client: Any) -> None:
    method = FakeMethod(*[grpc.StatusCode.UNAVAILABLE] * 10)
    with pytest.raises(UnavailableError) as info:
        grpc_client._call(method, object())
    assert len(method.timeouts) == 4
    assert (info.value.code, info.value.message) == ("UNAVAILABLE", "details of UNAVAILABLE")


@pytest.mark.parametrize(
    "code, cls",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, InvalidRequestError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, ServerError),
        (grpc.StatusCode.UNIMPLEMENTED, NotOfferedError),
    ],
)
def test_grpc_errors_are_mapped_and_never_retried(grpc_client: Any, code: grpc.StatusCode, cls: type) -> None:
    method = FakeMethod(code)
    with pytest.raises(cls) as info:
        grpc_client._call(method, object())
    assert type(info.value) is cls and info.value.code == code.name
    assert len(method.timeouts) == 1 and grpc_client.sleeps == []


CATALOG = [
    {"name": "lstm", "store_name": "mnist-lstm", "task": "classification", "default": False},
    {"name": "gated-rnn", "store_name": "mnist-gated-rnn", "task": "classification", "default": True},
    {"name": "vae2", "store_name": "fashion-vae2-decoder", "task": "generation", "default": True},
    {"name": "vae2", "store_name": "fashion-vae2-encoder", "task": "encoding", "default": False},
]


def test_grpc_model_names_and_defaults_come_from_the_servers_catalog(grpc_client: Any, monkeypatch: Any) -> None:
    catalog = grpc_client.catalog
    listings = []

    def models() -> list[dict[str, Any]]:
        listings.append(1)
        catalog.entries = [dict(e) for e in CATALOG]
        return catalog.entries

    monkeypatch.setattr(catalog, "models", models)
    assert catalog.entry("lstm", "classification")["store_name"] == "mnist-lstm"
    assert catalog.entry("mnist-lstm", "classification")["name"] == "lstm"
    assert catalog.entry(None, "classification")["name"] == "gated-rnn"  # the server's default
    assert catalog.entry(None, "generation")["store_name"] == "fashion-vae2-decoder"
    assert catalog.encoder(None)["store_name"] == "fashion-vae2-encoder"  # the default decoder's VAE
    assert len(listings) == 1  # listed once, then cached
    # An unknown name looks again (a model may have been published since), then goes to the server as it is.
    assert catalog.entry("resnet", "classification") == {"name": "resnet", "store_name": "resnet", "task": "classification"}
    assert len(listings) == 2
    # A model of another task is refused as the server's data plane refuses it.
    with pytest.raises(InvalidRequestError, match=r"^model 'lstm' is a classifier, not an encoder; encoders: vae2$"):
        catalog.encoder("lstm")
    with pytest.raises(InvalidRequestError, match=r"^model 'vae2' is a decoder, not a classifier; classifiers: gated-rnn, lstm$"):
        catalog.entry("vae2", "classification")
    catalog.entries = [e for e in CATALOG if e["task"] == "classification"]
    monkeypatch.setattr(catalog, "models", lambda: catalog.entries)
    with pytest.raises(NotFoundError, match="no default generation model"):
        catalog.entry(None, "generation")


# -- the same limits on both transports ----------------------------------------------------------

ROW_LIMIT, MANIFOLD_N = 256, 40
DECODER, CLASSIFIER = "fashion-vae2-decoder", "mnist-lstm"
# What the server answers over every protocol for the two mistakes of issue 19.
SAMPLE_MESSAGE = f"at most {ROW_LIMIT} latent points per request for model {DECODER}, got 1000"
MANIFOLD_MESSAGE = f"n must be at most {MANIFOLD_N}, got 100"


def rows_message(store: str, rows: int) -> str:
    what = "latent points" if store == DECODER else "images"
    return f"at most {ROW_LIMIT} {what} per request for model {store}, got {rows}"


class FakeServer:
    """The server side of a GRPCClient's stubs (v2 RepositoryIndex/ModelConfig, GetModelMetadata, Predict) with one
    classifier and one decoder; Predict keeps the row limit with the server's message. Records each Predict as
    (store, declared shape, whether values came)."""

    MODELS = {
        CLASSIFIER: ("lstm", "classifier", "classification", "images", [-1, 28, 28], "probabilities", [-1, 10]),
        DECODER: ("vae2", "decoder", "generation", "z", [-1, 2], "images", [-1, 28, 28, 1]),
    }

    def __init__(self, max_batch_size: int = ROW_LIMIT, max_manifold_n: int = MANIFOLD_N) -> None:
        self.max_batch_size, self.max_manifold_n = max_batch_size, max_manifold_n
        self.predicts: list[tuple[str, list[int], bool]] = []

    def RepositoryIndex(self, request: Any, timeout: float) -> Any:
        from contract.protos.inference import grpc_service_pb2 as v2

        return v2.RepositoryIndexResponse(models=[v2.RepositoryIndexResponse.ModelIndex(name=name) for name in self.MODELS])

    def ModelConfig(self, request: Any, timeout: float) -> Any:
        from contract.protos.inference import grpc_service_pb2 as v2
        from contract.protos.inference import model_config_pb2

        public, kind, task = self.MODELS[request.name][:3]
        parameters = {"task": task, "kind": kind, "public_name": public, "default": "true"}
        if kind == "decoder":
            parameters["max_manifold_n"] = str(self.max_manifold_n)
        config = model_config_pb2.ModelConfig(
            name=request.name,
            max_batch_size=self.max_batch_size,
            parameters={k: model_config_pb2.ModelParameter(string_value=v) for k, v in parameters.items()},
        )
        return v2.ModelConfigResponse(config=config)

    def GetModelMetadata(self, request: Any, timeout: float) -> Any:
        from contract.protos.tensorflow.core.framework import types_pb2
        from contract.protos.tensorflow.core.protobuf import meta_graph_pb2
        from contract.protos.tensorflow_serving.apis import get_model_metadata_pb2

        _public, _kind, _task, input_name, input_shape, output_name, output_shape = self.MODELS[request.model_spec.name]
        sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        for tensors, name, shape in ((sig.inputs, input_name, input_shape), (sig.outputs, output_name, output_shape)):
            info = tensors[name]
            info.dtype = types_pb2.DT_FLOAT
            for size in shape:
                info.tensor_shape.dim.add(size=size)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        sigs.signature_def["serving_default"].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.metadata["signature_def"].Pack(sigs)
        return response

    def Predict(self, request: Any, timeout: float) -> Any:
        from contract.protos.tensorflow_serving.apis import predict_pb2
        from contract.tensors import array_to_tensor_proto

        store = request.model_spec.name
        _public, _kind, _task, input_name, _shape, output_name, output_shape = self.MODELS[store]
        tensor = request.inputs[input_name]
        shape = [int(d.size) for d in tensor.tensor_shape.dim]
        self.predicts.append((store, shape, bool(tensor.tensor_content or tensor.float_val or tensor.int_val)))
        if shape[0] > ROW_LIMIT:  # the server's limit, whatever the config says
            raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, rows_message(store, shape[0]))
        if not self.predicts[-1][2]:
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input {input_name!r}: no values were sent")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = store
        response.outputs[output_name].CopyFrom(array_to_tensor_proto(np.zeros((shape[0], *output_shape[1:]), np.float32)))
        if store == CLASSIFIER:  # the verdict the server adds to a classifier's answer (serving/core/verdict.py)
            response.outputs["confidence"].CopyFrom(array_to_tensor_proto(np.full(shape[0], 0.25, np.float32)))
            response.outputs["digit"].CopyFrom(array_to_tensor_proto(np.zeros(shape[0], bool)))
            response.outputs["reason"].CopyFrom(array_to_tensor_proto(np.array([b"low-confidence"] * shape[0], dtype=object)))
        return response


def fake_http_server(request: httpx.Request) -> httpx.Response:
    """The HTTP routes sample, manifold, classify and generate with the server's limits and messages."""
    path = request.url.path
    if path == "/v1/generate/sample":
        n = json.loads(request.content)["n"]
        if n > ROW_LIMIT:
            return httpx.Response(413, json={"error": rows_message(DECODER, n), "type": "PayloadTooLarge"})
        return httpx.Response(200, json={"model": "vae2", "version": "1", "images": np.zeros((n, 28, 28)).tolist()})
    if path == "/v1/generate/manifold":
        n = int(request.url.params["n"])
        if n > MANIFOLD_N:
            return httpx.Response(413, json={"error": f"n must be at most {MANIFOLD_N}, got {n}", "type": "PayloadTooLarge"})
        return httpx.Response(200, content=b"\x89PNG", headers={"Content-Type": "image/png"})
    rows = len(json.loads(request.content)["images" if path == "/v1/classify" else "z"])
    if rows > ROW_LIMIT:
        return httpx.Response(413, json={"error": rows_message(CLASSIFIER, rows), "type": "PayloadTooLarge"})
    if path == "/v1/classify":
        return httpx.Response(200, json={"model": "lstm", "version": "1", "predictions": [CLASSIFIED["predictions"][0]] * rows})
    return httpx.Response(200, json={"model": "vae2", "version": "1", "images": np.zeros((rows, 28, 28)).tolist()})


class Recorder:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler, self.requests = handler, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def transports(monkeypatch: pytest.MonkeyPatch) -> Any:
    """(HTTP client, its recorded requests, gRPC client, its fake server), both on the same fake server rules."""
    recorder = Recorder(fake_http_server)
    http = HTTPClient("http://test", transport=httpx.MockTransport(recorder), sleep=lambda s: None)
    server = FakeServer()
    grpc_client = GRPCClient("127.0.0.1:1", sleep=lambda s: None)
    monkeypatch.setattr(grpc_client, "_stub", lambda: server)
    monkeypatch.setattr(grpc_client, "_v2", lambda: server)
    yield http, recorder.requests, grpc_client, server
    http.close()
    grpc_client.close()


def test_sample_over_the_row_limit_fails_alike_and_costs_the_grpc_client_nothing(transports: Any) -> None:
    http, requests, grpc_client, server = transports
    with pytest.raises(InvalidRequestError) as over_http:
        http.sample(1000, seed=0)
    with pytest.raises(InvalidRequestError) as over_grpc:
        grpc_client.sample(1000, seed=0)
    assert type(over_http.value) is type(over_grpc.value) is InvalidRequestError
    assert over_http.value.message == over_grpc.value.message == SAMPLE_MESSAGE
    assert (over_http.value.status, over_grpc.value.code) == (413, "RESOURCE_EXHAUSTED")
    assert len(requests) == 1
    # One Predict that declares the 1000 rows and carries no values: the server's limit refuses it by its shape.
    assert server.predicts == [(DECODER, [1000, 2], False)]


def test_sample_is_one_request_on_both_transports(transports: Any) -> None:
    http, requests, grpc_client, server = transports
    http.max_batch_rows = grpc_client.max_batch_rows = 7  # splits classify and generate, never a sample
    assert http.sample(16, seed=1).shape == grpc_client.sample(16, seed=1).shape == (16, 28, 28)
    assert len(requests) == 1
    assert server.predicts == [(DECODER, [16, 2], True)]


def test_manifold_over_max_manifold_n_fails_alike_and_no_grid_is_requested(transports: Any) -> None:
    http, requests, grpc_client, server = transports
    with pytest.raises(InvalidRequestError) as over_http:
        http.manifold(n=100)
    with pytest.raises(InvalidRequestError) as over_grpc:
        grpc_client.manifold(n=100)
    assert type(over_http.value) is type(over_grpc.value) is InvalidRequestError
    assert over_http.value.message == over_grpc.value.message == MANIFOLD_MESSAGE
    assert len(requests) == 1
    assert server.predicts == []  # no 100 x 100 grid, in one call or in many


def test_the_manifold_limit_comes_from_the_model_config(transports: Any) -> None:
    _http, _requests, grpc_client, server = transports
    server.max_manifold_n = 12
    with pytest.raises(InvalidRequestError, match=r"^n must be at most 12, got 13$"):
        grpc_client.manifold(n=13)
    assert server.predicts == []


@pytest.mark.parametrize("max_batch_size, calls", [(ROW_LIMIT, 7), (100, 16)])
def test_the_manifold_grid_is_decoded_within_the_row_limit(transports: Any, max_batch_size: int, calls: int) -> None:
    from PIL import Image

    _http, _requests, grpc_client, server = transports
    server.max_batch_size = max_batch_size
    png = grpc_client.manifold(n=MANIFOLD_N)
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (MANIFOLD_N * 28, MANIFOLD_N * 28)
    sizes = [shape[0] for _store, shape, _values in server.predicts]
    assert len(sizes) == calls and max(sizes) <= max_batch_size and sum(sizes) == MANIFOLD_N**2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n": 0}, "n must be at least 1, got 0"),
        ({"scale": 1000.0}, "scale must be a number in (0, 100], got 1000"),
        ({"scale": float("nan")}, "scale must be a number in (0, 100], got nan"),
        ({"dims": (0, 5)}, "dims must be two distinct indices in 0..1, got '0,5'"),
        ({"dims": (1, 1)}, "dims must be two distinct indices in 0..1, got '1,1'"),
        ({"dims": (0.5, 1)}, "dims must be comma-separated ints, got '0.5,1'"),
        ({"fixed": [1.0]}, "fixed must be 2 finite numbers (one per latent dim of vae2), got 1"),
        ({"fixed": []}, "fixed must be comma-separated floats, got ''"),
    ],
)
def test_grpc_manifold_parameters_are_refused_as_the_http_route_refuses_them(transports: Any, options: dict, message: str) -> None:
    _http, _requests, grpc_client, server = transports
    with pytest.raises(InvalidRequestError) as info:
        grpc_client.manifold(**options)
    assert info.value.message == message
    assert server.predicts == []


def test_classify_and_generate_split_alike_and_keep_the_servers_limit(transports: Any) -> None:
    http, requests, grpc_client, server = transports
    images = np.zeros((300, 28, 28), np.uint8)
    over_http, over_grpc = http.classify(images, model="lstm"), grpc_client.classify(images, model="lstm")
    assert len(over_http) == len(over_grpc) == 300
    for a, b in ((over_http[0], over_grpc[0]), (over_http[-1], over_grpc[-1])):  # the verdict reads alike
        assert (a.confidence, a.digit, a.reason) == (b.confidence, b.digit, b.reason) == (0.25, False, "low-confidence")
    assert over_http[0].detail == "confidence 0.25 is below 0.50" and over_grpc[0].detail is None
    assert [len(json.loads(r.content)["images"]) for r in requests] == [256, 44]
    assert [shape[0] for _store, shape, _values in server.predicts] == [256, 44]

    # Rows per request past the server's limit: the same refusal on both transports.
    http.max_batch_rows = grpc_client.max_batch_rows = 300
    with pytest.raises(InvalidRequestError) as over_http:
        http.classify(images, model="lstm")
    with pytest.raises(InvalidRequestError) as over_grpc:
        grpc_client.classify(images, model="lstm")
    assert over_http.value.message == over_grpc.value.message == rows_message(CLASSIFIER, 300)


@pytest.mark.parametrize("argv", [["sample", "-n", "1000", "-o", "x.png"], ["manifold", "--n", "100", "-o", "x.png"]])
def test_the_cli_exits_alike_on_both_transports(
    transports: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any, argv: list[str]
) -> None:
    import clients
    from clients.cli import main

    http, _requests, grpc_client, _server = transports
    monkeypatch.setattr(clients, "connect", lambda url=None, grpc=None, **options: grpc_client if grpc else http)
    monkeypatch.chdir(tmp_path)
    outcomes = []
    for transport in (["--url", "http://test"], ["--grpc", "127.0.0.1:1"]):
        outcomes.append((main([*transport, *argv]), capsys.readouterr().err))
    message = SAMPLE_MESSAGE if argv[0] == "sample" else MANIFOLD_MESSAGE
    assert outcomes == [(2, f"error: {message}\n")] * 2
    assert not (tmp_path / "x.png").exists()


# -- answer fields: the version number on both transports; what gRPC does not offer -------------

MODELS = {"models": [{"name": "lstm", "store_name": "mnist-lstm", "version": "di7qmghsf6hhwax4", "version_number": 1796641954}]}


def test_http_reports_the_version_number_of_the_store_tag_an_answer_names() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        if request.url.path == "/v1/classify/batch":
            buf = io.BytesIO()
            np.save(buf, np.eye(10, dtype=np.float32)[:2])
            return httpx.Response(200, content=buf.getvalue(), headers={"X-Model": "lstm", "X-Model-Version": "di7qmghsf6hhwax4"})
        tag = "newtag" if request.url.params.get("model") == "new" else "di7qmghsf6hhwax4"
        return httpx.Response(200, json={**CLASSIFIED, "version": tag})

    recorder = Recorder(server)
    with HTTPClient("http://test", transport=httpx.MockTransport(recorder)) as client:
        assert client.classify(np.zeros((28, 28), np.uint8))[0].version == "1796641954"
        batch = client.classify_batch(np.zeros((2, 28, 28), np.uint8))
        assert (batch.model, batch.version, batch.labels.tolist()) == ("lstm", "1796641954", [0, 1])
        assert [r.url.path for r in recorder.requests] == ["/v1/classify", "/v1/models", "/v1/classify/batch"]  # listed once
        # A tag the listing does not have: listed again, and kept as it is when it is still not there.
        assert client.classify_image(b"\x89PNG", model="new").version == "newtag"
        assert [r.url.path for r in recorder.requests][-2:] == ["/v1/classify/image", "/v1/models"]


@pytest.mark.parametrize(
    "call, what",
    [
        (lambda c: c.plot_clusters(), "the label-cluster plot"),
        (lambda c: c.plot_confusion(model="ensemble"), "the confusion-matrix plot"),
        (lambda c: c.manifold(n=3, axes=True), "a manifold with axes (axes=True)"),
        (lambda c: c.classify(np.zeros((1, 28, 28)), model="ensemble", members=True), "each ensemble member's answer (members=True)"),
        (lambda c: c.classify_batch(np.zeros((1, 28, 28)), model="ensemble", members=True), "each ensemble member's answer"),
    ],
)
def test_grpc_says_what_it_does_not_offer_before_any_call(transports: Any, call: Callable[[Any], Any], what: str) -> None:
    _http, _requests, grpc_client, server = transports
    with pytest.raises(NotOfferedError) as info:
        call(grpc_client)
    assert (
        info.value.message.startswith(what)
        and "not offered over gRPC" in info.value.message
        and info.value.message.endswith("use HTTP (connect(url=...), or digits-client --url)")
    )
    assert info.value.code == "UNIMPLEMENTED" and server.predicts == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"z": [[0, 0], [1, 1]], "images": np.zeros((2, 28, 28))}, "send exactly one of z (two latent points) or images (two images)"),
        ({}, "send exactly one of z (two latent points) or images (two images)"),
        ({"z": [[0, 0], [1, 1]], "steps": 1}, "steps must be within 2..100, got 1"),
        ({"z": [[0, 0], [1, 1]], "steps": 101}, "steps must be within 2..100, got 101"),
        ({"z": [[0, 0], [1, 1], [2, 2]]}, "z must be two latent points [start, end], got shape [3, 2]"),
        ({"z": [0.0, 1.0]}, "z must be two latent points [start, end], got shape [2]"),
        ({"z": [[0, float("nan")], [1, 1]]}, "z contains NaN or infinite values"),
        ({"images": np.zeros((3, 28, 28))}, "images must be two 28 x 28 images [start, end], got shape [3, 28, 28]"),
    ],
)
def test_grpc_interpolate_refuses_as_the_route_refuses(transports: Any, options: dict[str, Any], message: str) -> None:
    _http, _requests, grpc_client, server = transports
    with pytest.raises(InvalidRequestError) as info:
        grpc_client.interpolate(**options)
    assert info.value.message == message
    assert server.predicts == []


def test_grpc_interpolate_decodes_the_routes_path_in_one_call(transports: Any) -> None:
    _http, _requests, grpc_client, server = transports
    path = grpc_client.interpolate(z=[[-1.0, 2.0], [1.0, 0.0]], steps=5)
    np.testing.assert_allclose(path.z, [[-1, 2], [-0.5, 1.5], [0, 1], [0.5, 0.5], [1, 0]])
    assert (path.model, path.images.shape) == ("vae2", (5, 28, 28))
    assert server.predicts == [(DECODER, [5, 2], True)]
    # Wrong latent size: the decoder's own rule, asked of the server with the two points' shape.
    with pytest.raises(InvalidRequestError):
        grpc_client.interpolate(z=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert server.predicts[-1] == (DECODER, [2, 3], False)

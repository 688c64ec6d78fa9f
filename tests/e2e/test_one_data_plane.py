"""One table of good and bad inputs over every protocol: the same answer, the same status class and the
same message for each mistake (the data plane decides once, the fronts only translate).

Protocols: ``/v1`` JSON, ``/v1`` ``.npy`` (bulk), OIP v2 REST (binary tensor extension), OIP v2 gRPC
(stock ``tritonclient.grpc``) and TF Serving gRPC (stock ``tensorflow-serving-api`` stubs). JSON
numbers carry no dtype (all integers are UINT8 pixels, any float makes FP32), so the dtype rows skip
the JSON protocol; the ``.npy`` route is the classifiers' bulk route, with its own row limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import pytest

tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is a dev dependency")
from tritonclient.utils import InferenceServerException  # noqa: E402

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from serving.protocols.codec import array_to_npy  # noqa: E402

pytestmark = pytest.mark.slow

# status class -> (HTTP status, gRPC code)
CLASSES = {
    "ok": (200, grpc.StatusCode.OK),
    "invalid": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "too large": (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "not found": (404, grpc.StatusCode.NOT_FOUND),
}


@dataclass
class Answer:
    status: str  # a key of CLASSES
    message: str = ""
    outputs: np.ndarray | None = None


def _http_answer(response: httpx.Response, decode) -> Answer:
    for name, (code, _) in CLASSES.items():
        if response.status_code == code:
            return Answer(name, "" if code == 200 else response.json()["error"], decode(response) if code == 200 else None)
    raise AssertionError(f"unexpected HTTP {response.status_code}: {response.text[:300]}")


def _grpc_status(code) -> str:
    for name, (_, grpc_code) in CLASSES.items():
        if code == grpc_code:
            return name
    raise AssertionError(f"unexpected gRPC code {code}")


class Protocols:
    """One call per protocol: (model, version, input name, array) -> Answer."""

    def __init__(self, server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.http_url, timeout=30)
        self.triton = tritonclient_grpc.InferenceServerClient(server.grpc_target)
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.tf = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self) -> None:
        self.http.close()
        self.triton.close()
        self.channel.close()

    def v1_json(self, model, version, name, arr, route):
        body = {"model": model, ("z" if route == "/v1/generate" else "images"): arr.tolist()}
        if route == "/v1/generate":
            body["format"] = "array"
        if version is not None:
            body["version"] = version
        key = "images" if route == "/v1/generate" else "predictions"

        def decode(r):
            got = r.json()[key]
            return np.array([p["probabilities"] for p in got] if key == "predictions" else got, np.float32)

        # json.dumps writes NaN as a bare token, which the server reads (and then refuses as non-finite).
        return _http_answer(self.http.post(route, content=json.dumps(body), headers={"content-type": "application/json"}), decode)

    def v1_npy(self, model, version, name, arr, route):
        params = {"model": model, **({"version": version} if version is not None else {})}
        response = self.http.post(
            "/v1/classify/batch", params=params, content=array_to_npy(arr), headers={"content-type": "application/octet-stream"}
        )
        return _http_answer(response, lambda r: np.load(__import__("io").BytesIO(r.content)))

    def v2_rest(self, model, version, name, arr, route):
        datatype = {"float32": "FP32", "float64": "FP64", "uint8": "UINT8", "int64": "INT64"}[arr.dtype.name]
        raw = np.ascontiguousarray(arr).tobytes()
        header = json.dumps(
            {
                "inputs": [{"name": name, "shape": list(arr.shape), "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        response = self.http.post(path, content=header + raw, headers={"Inference-Header-Content-Length": str(len(header))})

        def decode(r):
            length = int(r.headers["Inference-Header-Content-Length"])
            out = json.loads(r.content[:length])["outputs"][0]  # the model's own output comes first
            size = out["parameters"]["binary_data_size"]
            return np.frombuffer(r.content[length : length + size], np.float32).reshape(out["shape"])

        return _http_answer(response, decode)

    def v2_grpc(self, model, version, name, arr, route):
        datatype = {"float32": "FP32", "float64": "FP64", "uint8": "UINT8", "int64": "INT64"}[arr.dtype.name]
        tensor = tritonclient_grpc.InferInput(name, list(arr.shape), datatype)
        tensor.set_data_from_numpy(arr)
        try:
            result = self.triton.infer(model, [tensor], model_version="" if version is None else str(version))
        except InferenceServerException as e:
            code = getattr(grpc.StatusCode, e.status().removeprefix("StatusCode."))
            return Answer(_grpc_status(code), e.message())
        return Answer("ok", outputs=result.as_numpy(result.get_response().outputs[0].name))

    def tf_serving(self, model, version, name, arr, route):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = int(version)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(arr))
        try:
            response = self.tf.Predict(request, timeout=30)
        except grpc.RpcError as e:
            return Answer(_grpc_status(e.code()), e.details())
        own = "probabilities" if "probabilities" in response.outputs else next(iter(response.outputs))  # a decoder's images
        return Answer("ok", outputs=tf.make_ndarray(response.outputs[own]))


PROTOCOLS = ("v1_json", "v1_npy", "v2_rest", "v2_grpc", "tf_serving")
DECODER_PROTOCOLS = ("v1_json", "v2_rest", "v2_grpc", "tf_serving")  # /v1 takes latent points as JSON
NOT_JSON = ("v1_npy", "v2_rest", "v2_grpc", "tf_serving")  # tensors with a dtype
NAMED = ("v2_rest", "v2_grpc", "tf_serving")  # requests that name their input


def _pixels(dtype, value, rows=1):
    return np.full((rows, 28, 28), value, dtype)


# (case, model, version, input name, array, protocols, status class, message every protocol gives)
BAD = [
    (
        "fp64 pixels",
        "lstm",
        None,
        "images",
        _pixels(np.float64, 0.5),
        NOT_JSON,
        "invalid",
        "input 'images' of model mnist-lstm takes datatype UINT8 (pixels 0..255) or FP32 in [0, 1], got FP64",
    ),
    (
        "int64 pixels",
        "lstm",
        None,
        "images",
        _pixels(np.int64, 3),
        NOT_JSON,
        "invalid",
        "input 'images' of model mnist-lstm takes datatype UINT8 (pixels 0..255) or FP32 in [0, 1], got INT64",
    ),
    (
        "fp32 pixels out of range",
        "lstm",
        None,
        "images",
        _pixels(np.float32, 2.0),
        PROTOCOLS,
        "invalid",
        "input 'images' values must be within [0, 1], got min 2 and max 2; send pixels as UINT8 0..255, or as FP32 divided by 255",
    ),
    (
        "a NaN pixel",
        "lstm",
        None,
        "images",
        np.where(np.arange(784).reshape(1, 28, 28) == 5, np.nan, 0.5).astype(np.float32),
        PROTOCOLS,
        "invalid",
        "input 'images' contains 1 non-finite value(s)",
    ),
    (
        "wrong shape",
        "lstm",
        None,
        "images",
        _pixels(np.float32, 0.5)[:, :27],
        PROTOCOLS,
        "invalid",
        "input 'images' of model mnist-lstm must have shape N x 28 x 28, got 1 x 27 x 28",
    ),
    (
        "too many images",
        "lstm",
        None,
        "images",
        _pixels(np.uint8, 0, rows=257),
        ("v1_json", "v2_rest", "v2_grpc", "tf_serving"),
        "too large",
        "at most 256 images per request for model mnist-lstm, got 257",
    ),
    (
        "wrong input name",
        "lstm",
        None,
        "pixels",
        _pixels(np.float32, 0.5),
        NAMED,
        "invalid",
        "model mnist-lstm has no input 'pixels'; its input is 'images'",
    ),
    (
        "unknown model",
        "gru",
        None,
        "images",
        _pixels(np.float32, 0.5),
        NOT_JSON + ("v1_json",),
        "not found",
        "unknown model 'gru'; served: ",
    ),
    (
        "unknown version",
        "lstm",
        "2",
        "images",
        _pixels(np.float32, 0.5),
        PROTOCOLS,
        "not found",
        "model mnist-lstm has no version '2'; serving ",
    ),
    (
        "uint8 latent points",
        "vae2",
        None,
        "z",
        np.zeros((1, 2), np.uint8),
        ("v2_rest", "v2_grpc", "tf_serving"),
        "invalid",
        "input 'z' of model fashion-vae2-decoder takes datatype FP32, got UINT8",
    ),
    (
        "too many latent points",
        "vae2",
        None,
        "z",
        np.zeros((257, 2), np.float32),
        DECODER_PROTOCOLS,
        "too large",
        "at most 256 latent points per request for model fashion-vae2-decoder, got 257",
    ),
    (
        "a latent point of the wrong size",
        "vae2",
        None,
        "z",
        np.zeros((1, 3), np.float32),
        DECODER_PROTOCOLS,
        "invalid",
        "input 'z' of model fashion-vae2-decoder must have shape N x 2, got 1 x 3",
    ),
]


@pytest.fixture(scope="module")
def protocols(server):
    p = Protocols(server)
    yield p
    p.close()


def _route(model: str) -> str:
    return "/v1/generate" if model.startswith("vae") else "/v1/classify"


@pytest.mark.parametrize(("case", "model", "version", "name", "arr", "where", "status", "message"), BAD, ids=[row[0] for row in BAD])
def test_the_same_mistake_gets_the_same_answer_on_every_protocol(
    protocols, server, case, model, version, name, arr, where, status, message
):
    answers = {p: getattr(protocols, p)(model, version, name, arr, _route(model)) for p in where}
    for p, answer in answers.items():
        assert answer.status == status, (p, answer)
        assert message in answer.message, (p, answer.message)
    texts = {answer.message for answer in answers.values()}
    assert len(texts) == 1, answers  # word for word
    assert server.process.poll() is None


def test_uint8_and_fp32_pixels_give_one_answer_on_every_protocol(protocols, server):
    images = server.test_images[:3].astype(np.uint8)
    assert images.max() > 1  # real pixels: TF Serving's DT_UINT8 used to be refused above 1
    version = str(protocols.http.get("/v1/models/lstm").json()["version_number"])
    reference = protocols.v1_json("lstm", None, "images", images.astype(np.float32) / 255, "/v1/classify").outputs
    for p in PROTOCOLS:
        for arr in (images, images.astype(np.float32) / 255):
            for v in (None, version):  # the version number /v1/models prints works everywhere, an integer in JSON too
                answer = getattr(protocols, p)("lstm", int(v) if v and p == "v1_json" else v, "images", arr, "/v1/classify")
                assert answer.status == "ok", (p, arr.dtype, v, answer)
                np.testing.assert_allclose(answer.outputs, reference, atol=1e-6, err_msg=f"{p} {arr.dtype}")


VERDICT = ("probabilities", "confidence", "digit", "reason")


def test_the_confidence_and_the_not_a_digit_verdict_are_the_same_on_every_protocol(protocols, server):
    """An empty image, a flat grey one, a filled block and real digits: digit, reason and confidence
    alike over /v1 JSON, an uploaded PNG, v2 REST (JSON), v2 gRPC and TF Serving."""
    from contract.images import to_png

    block = np.zeros((28, 28), np.float32)
    block[4:24, 4:24] = 1.0
    images = np.stack([np.zeros((28, 28), np.float32), np.full((28, 28), 0.5, np.float32), block, *server.test_images[:8] / 255.0])
    images = images.astype(np.float32)
    v1 = protocols.http.post("/v1/classify", json={"model": "lstm", "images": images.tolist()}).json()["predictions"]
    expected = [(p["digit"], p["reason"] or "", round(p["confidence"], 5)) for p in v1]
    assert [e[:2] for e in expected[:3]] == [(False, "blank"), (False, "uniform"), (False, "not-a-digit")]
    # real MNIST digits: digits, or (the tiny test store's models are unsure of some) low-confidence
    assert any(e[0] for e in expected[3:]) and {e[1] for e in expected[3:]} <= {"", "low-confidence"}, expected
    assert all(bool(p["detail"]) == (not p["digit"]) and (p["reason"] is None) == p["digit"] for p in v1)
    # the PNG upload of the empty canvas: no error, the same verdict
    upload = protocols.http.post("/v1/classify/image?model=lstm", files={"image": ("blank.png", to_png(images[0]), "image/png")})
    assert upload.status_code == 200, upload.text
    assert upload.json()["predictions"][0]["reason"] == "blank" and upload.json()["predictions"][0]["digit"] is False

    rest = protocols.http.post(
        "/v2/models/mnist-lstm/infer",
        json={
            "inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32", "data": images.ravel().tolist()}],
            "outputs": [{"name": n} for n in VERDICT],  # answered when named; the metadata lists the model's own
        },
    ).json()
    outs = {o["name"]: o for o in rest["outputs"]}
    assert [o["name"] for o in rest["outputs"]] == list(VERDICT)
    assert outs["digit"]["datatype"] == "BOOL" and outs["reason"]["datatype"] == "BYTES"
    got_rest = list(zip(outs["digit"]["data"], outs["reason"]["data"], [round(c, 5) for c in outs["confidence"]["data"]]))

    tensor = tritonclient_grpc.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = protocols.triton.infer("mnist-lstm", [tensor], outputs=[tritonclient_grpc.InferRequestedOutput(n) for n in VERDICT])
    got_grpc = list(
        zip(result.as_numpy("digit").tolist(), [r.decode() for r in result.as_numpy("reason")], np.round(result.as_numpy("confidence"), 5))
    )

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist-lstm"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    request.output_filter.extend(VERDICT)
    response = protocols.tf.Predict(request, timeout=30)
    got_tf = list(
        zip(
            tf.make_ndarray(response.outputs["digit"]).tolist(),
            [r.decode() for r in tf.make_ndarray(response.outputs["reason"])],
            np.round(tf.make_ndarray(response.outputs["confidence"]), 5),
        )
    )
    for name, got in (("v2 REST", got_rest), ("v2 gRPC", got_grpc), ("TF Serving", got_tf)):
        assert [g[:2] for g in got] == [e[:2] for e in expected], name
        np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], atol=2e-5, err_msg=name)
    # what was asked for, only: v2 and TF Serving clients that name an output get that output alone
    only = tritonclient_grpc.InferRequestedOutput("digit")
    assert [o.name for o in protocols.triton.infer("mnist-lstm", [tensor], outputs=[only]).get_response().outputs] == ["digit"]
    assert [o.name for o in protocols.triton.infer("mnist-lstm", [tensor]).get_response().outputs] == ["probabilities"]


def test_one_latent_point_decodes_alike_on_every_protocol(protocols):
    z = np.array([[0.5, -1.0]], np.float32)
    answers = [getattr(protocols, p)("vae2", None, "z", z, "/v1/generate").outputs for p in DECODER_PROTOCOLS]
    for other in answers[1:]:
        np.testing.assert_allclose(other.reshape(1, 28, 28), answers[0].reshape(1, 28, 28), atol=1e-6)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("post", "/v1/classify?model=lstm", {"json": {"model": "gated-rnn", "images": [[[0] * 28] * 28]}}, 400, "model is given twice"),
        ("post", "/v1/generate/sample?model=vae4", {"json": {"n": 1, "model": "vae2"}}, 400, "model is given twice"),
        ("post", "/v1/generate/sample", {"json": {"n": 1000}}, 413, "at most 256 latent points per request"),
        ("get", "/v1/generate/manifold?n=2&dims=1", {}, 400, "dims must be two distinct indices in 0..1"),
        ("get", "/v1/generate/manifold?n=2&dims=0,1,2", {}, 400, "dims must be two distinct indices"),
        ("get", "/v1/generate/manifold?n=2&model=vae4&dims=3", {}, 400, "dims must be two distinct indices in 0..3"),
        ("get", "/v1/generate/manifold?n=100", {}, 413, "n must be at most 40, got 100"),
    ],
)
def test_v1_parameters_are_checked_before_use(protocols, method, path, kwargs, status, words):
    response = getattr(protocols.http, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_v1_json_routes_take_model_and_version_from_the_query(protocols):
    answer = protocols.http.post("/v1/classify?model=lstm", json={"images": [[[0] * 28] * 28]}).json()
    assert answer["model"] == "lstm"
    sample = protocols.http.post("/v1/generate/sample?model=vae4", json={"n": 1, "format": "array"}).json()
    assert sample["model"] == "vae4"
    number = protocols.http.get("/v1/models/lstm").json()["version_number"]
    assert protocols.http.post("/v1/classify", json={"model": "lstm", "version": number, "images": [[[0] * 28] * 28]}).status_code == 200

"""Drive a running server with KServe's own clients (``kserve.InferenceRESTClient`` / ``InferenceGRPCClient``).

Runs in ``.venv-kserve`` (kserve pins protobuf<7, the main venv has 7), started by
``tests/e2e/test_v2.py``; prints one JSON object with what each client saw. It asserts
nothing itself: the test compares the answers with ``/v1``'s.

    PROBE_HTTP=http://127.0.0.1:3000 PROBE_GRPC=127.0.0.1:8500 PROBE_IMAGES=images.npy python probe.py

(Environment, not flags: importing ``kserve`` parses ``sys.argv`` with its model server's options.)
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

CLASSIFIER, DECODER = "mnist-lstm", "fashion-vae2-decoder"


def request(model: str, name: str, arr: np.ndarray, datatype: str, binary: bool = True) -> InferRequest:
    tensor = InferInput(name, list(arr.shape), datatype)
    tensor.set_data_from_numpy(arr, binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[tensor])


async def rest(url: str, images: np.ndarray) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    out: dict[str, Any] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, CLASSIFIER),
        "unknown_model_ready": await client.is_model_ready(url, "no-such-model"),
    }
    for binary in (True, False):
        answer = await client.infer(url, request(CLASSIFIER, "images", images, "FP32", binary), model_name=CLASSIFIER)
        out[f"probabilities_binary_{binary}"] = answer.outputs[0].as_numpy().tolist()
        out["model_name"], out["model_version"] = answer.model_name, answer.model_version
    decoded = await client.infer(url, request(DECODER, "z", np.zeros((2, 2), np.float32), "FP32"), model_name=DECODER)
    out["decoded_shape"] = list(decoded.outputs[0].as_numpy().shape)
    bad = {
        "unknown_model": ("no-such-model", {"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}),
        "wrong_datatype": (CLASSIFIER, {"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "INT64", "data": [0] * 784}]}),
        "shape_vs_data": (CLASSIFIER, {"inputs": [{"name": "images", "shape": [2, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}),
        "missing_input": (CLASSIFIER, {"inputs": []}),
    }
    errors = {}
    for case, (model, body) in bad.items():
        try:
            await client.infer(url, body, model_name=model)
            errors[case] = {"status": 200}
        except httpx.HTTPStatusError as e:
            errors[case] = {"status": e.response.status_code, "body": e.response.json()}
    out["errors"] = errors
    await client.close()
    return out


async def grpc_(target: str, images: np.ndarray) -> dict[str, Any]:
    client = InferenceGRPCClient(target, timeout=30, retries=0)
    out: dict[str, Any] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready(CLASSIFIER),
    }
    answer = await client.infer(request(CLASSIFIER, "images", images, "FP32"))
    out["probabilities"] = answer.outputs[0].as_numpy().tolist()
    out["model_name"], out["model_version"] = answer.model_name, answer.model_version
    decoded = await client.infer(request(DECODER, "z", np.zeros((2, 2), np.float32), "FP32"))
    out["decoded_shape"] = list(decoded.outputs[0].as_numpy().shape)
    await client.close()
    # KServe's clients have no metadata calls; its generated stub has them.
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        server = await stub.ServerMetadata(pb.ServerMetadataRequest())
        model = await stub.ModelMetadata(pb.ModelMetadataRequest(name=CLASSIFIER))
        out["server_metadata"] = {"name": server.name, "extensions": list(server.extensions)}
        out["model_metadata"] = {
            "name": model.name,
            "versions": list(model.versions),
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in model.inputs],
        }
        pixel = pb.ModelInferRequest.InferInputTensor
        bad = {
            "unknown_model": pb.ModelInferRequest(model_name="no-such-model"),
            "unknown_version": pb.ModelInferRequest(model_name=CLASSIFIER, model_version="999"),
            "wrong_datatype": pb.ModelInferRequest(
                model_name=CLASSIFIER,
                inputs=[pixel(name="images", datatype="FP64", shape=[1, 28, 28])],
                raw_input_contents=[b"\0" * 784 * 8],
            ),
            "shape_vs_data": pb.ModelInferRequest(
                model_name=CLASSIFIER,
                inputs=[pixel(name="images", datatype="FP32", shape=[2, 28, 28])],
                raw_input_contents=[b"\0" * 784 * 4],
            ),
            "missing_input": pb.ModelInferRequest(model_name=CLASSIFIER),
            "oversize": pb.ModelInferRequest(
                model_name=CLASSIFIER,
                inputs=[pixel(name="images", datatype="FP32", shape=[100000, 28, 28])],
                raw_input_contents=[b"\0" * 16],
            ),
        }
        errors = {}
        for case, message in bad.items():
            try:
                await stub.ModelInfer(message, timeout=30)
                errors[case] = {"code": "OK"}
            except grpc.aio.AioRpcError as e:
                errors[case] = {"code": e.code().name, "details": e.details()}
        out["errors"] = errors
    return out


async def main() -> None:
    images = np.load(os.environ["PROBE_IMAGES"])  # float32 N x 28 x 28 in [0, 1]
    print(json.dumps({"rest": await rest(os.environ["PROBE_HTTP"], images), "grpc": await grpc_(os.environ["PROBE_GRPC"], images)}))


if __name__ == "__main__":
    asyncio.run(main())

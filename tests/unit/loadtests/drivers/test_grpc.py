from __future__ import annotations

import numpy as np
import pytest

from loadtests.drivers import grpc


def test_request_is_one_float_image_as_tensor_content():
    img = np.zeros((28, 28), dtype=np.uint8)
    img[3, 5] = 255
    img[7, 9] = 51
    predict_pb2, source = grpc.load_stubs()
    assert source in ("contract.protos.tensorflow_serving.apis", "tensorflow_serving.apis")
    raw = grpc.predict_request_bytes(img, "mnist-lstm", "images", predict_pb2=predict_pb2)
    request = predict_pb2.PredictRequest.FromString(raw)
    assert request.model_spec.name == "mnist-lstm" and request.model_spec.signature_name == "serving_default"
    tensor = request.inputs["images"]
    assert tensor.dtype == grpc.DT_FLOAT and [d.size for d in tensor.tensor_shape.dim] == [1, 28, 28]
    x = np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(1, 28, 28)
    np.testing.assert_allclose(x[0], img / 255.0, rtol=1e-6)
    assert not tensor.float_val  # the compact encoding only


def test_image_tensor_shapes_and_floats():
    assert grpc.image_tensor(np.ones((1, 28, 28), dtype=np.float64) * 0.5).dtype == np.float32
    assert float(grpc.image_tensor(np.full((28, 28), 0.25)).max()) == 0.25  # floats are taken as 0..1
    with pytest.raises(ValueError):
        grpc.image_tensor(np.zeros((2, 28, 28)))


def test_check_response_reads_output_shapes():
    predict_pb2, _ = grpc.load_stubs()
    response = predict_pb2.PredictResponse()
    out = response.outputs["probabilities"]
    out.dtype = grpc.DT_FLOAT
    for d in (1, 10):
        out.tensor_shape.dim.add().size = d
    assert grpc.check_response(response.SerializeToString(), predict_pb2) == {"probabilities": [1, 10]}
    with pytest.raises(ValueError):
        grpc.check_response(predict_pb2.PredictResponse().SerializeToString(), predict_pb2)


def test_cli_rejects_silly_arguments(capsys):
    assert grpc.main(["--target", "127.0.0.1:1", "-c", "0"]) == 2


def test_v2_infer_request_and_response():
    from contract.protos.inference import grpc_service_pb2 as pb

    image = np.full((28, 28), 255, np.uint8)
    request = pb.ModelInferRequest.FromString(grpc.infer_request_bytes(image, "mnist-lstm"))
    assert request.model_name == "mnist-lstm"
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("images", "FP32", [1, 28, 28])]
    assert np.frombuffer(request.raw_input_contents[0], "<f4").tolist() == [1.0] * 784
    response = pb.ModelInferResponse(raw_output_contents=[b"\0" * 40])
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    assert grpc.check_infer_response(response.SerializeToString()) == {"probabilities": [1, 10]}
    with pytest.raises(ValueError):
        grpc.check_infer_response(pb.ModelInferResponse().SerializeToString())

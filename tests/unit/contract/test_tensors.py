"""TensorProto <-> numpy (contract.tensors) against TensorFlow's own make_tensor_proto / make_ndarray."""

from __future__ import annotations

import os

import numpy as np
import pytest

from contract import tensors
from contract.errors import InvalidInput, PayloadTooLarge, ServingError
from contract.tensors import array_to_tensor_proto, tensor_proto_to_array


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def pb():
    pytest.importorskip("tensorflow")
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    return tensor_pb2, tensor_shape_pb2, types_pb2


def sample(dtype: str, shape=(2, 3, 4)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 10).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True).astype(dtype)


# --- TensorProto ----------------------------------------------------------------------

DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_content_from_tf_decodes_like_make_ndarray(tf, dtype):
    arr = sample(dtype)
    proto = tf.make_tensor_proto(arr)
    assert proto.tensor_content  # the fast path is what is under test
    out = tensor_proto_to_array(proto)
    expected = tf.make_ndarray(proto)
    assert out.dtype == expected.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_our_protos_decode_with_make_ndarray(tf, dtype):
    arr = sample(dtype)
    proto = array_to_tensor_proto(arr)
    expected = tf.make_ndarray(proto)
    assert expected.dtype == arr.dtype
    np.testing.assert_array_equal(expected, arr)
    assert proto.dtype == tf.dtypes.as_dtype(arr.dtype).as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == list(arr.shape)
    np.testing.assert_array_equal(tensor_proto_to_array(proto), arr)


def _val_proto(pb, dtype: str, shape, values):
    tensor_pb2, tensor_shape_pb2, types_pb2 = pb
    enum, field = {
        "float32": (types_pb2.DT_FLOAT, "float_val"),
        "float64": (types_pb2.DT_DOUBLE, "double_val"),
        "float16": (types_pb2.DT_HALF, "half_val"),
        "int32": (types_pb2.DT_INT32, "int_val"),
        "int64": (types_pb2.DT_INT64, "int64_val"),
        "uint8": (types_pb2.DT_UINT8, "int_val"),
    }[dtype]
    proto = tensor_pb2.TensorProto(
        dtype=enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]),
    )
    if dtype == "float16":  # half_val carries the bit patterns
        values = np.asarray(values, dtype=np.float16).view(np.uint16).astype(int).tolist()
    getattr(proto, field).extend(values)
    return proto


@pytest.mark.parametrize("dtype", DTYPES)
def test_typed_val_fields_decode_like_make_ndarray(tf, pb, dtype):
    arr = sample(dtype)
    proto = _val_proto(pb, dtype, arr.shape, arr.ravel().tolist())
    assert not proto.tensor_content
    out = tensor_proto_to_array(proto)
    expected = tf.make_ndarray(proto)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_short_val_list_broadcasts_like_tf(tf, pb, dtype):
    for values in ([7], [1, 2, 3]):
        proto = _val_proto(pb, dtype, (2, 3), values)
        np.testing.assert_array_equal(tensor_proto_to_array(proto), tf.make_ndarray(proto))
    empty = _val_proto(pb, dtype, (2, 2), [])
    np.testing.assert_array_equal(tensor_proto_to_array(empty), tf.make_ndarray(empty))


def test_scalar_made_by_tf_broadcasts(tf):
    proto = tf.make_tensor_proto(0.25, shape=[2, 28, 28])
    out = tensor_proto_to_array(proto)
    assert out.shape == (2, 28, 28) and (out == 0.25).all()
    proto16 = tf.make_tensor_proto(np.float16(1.5), shape=[3])
    np.testing.assert_array_equal(tensor_proto_to_array(proto16), tf.make_ndarray(proto16))


def test_bool_proto(tf):
    proto = tf.make_tensor_proto([True, False, True])
    np.testing.assert_array_equal(tensor_proto_to_array(proto), [True, False, True])


def test_unsupported_dtype_is_named(tf):
    proto = tf.make_tensor_proto(np.array([b"a", b"b"], dtype=object))
    with pytest.raises(InvalidInput, match="DT_STRING"):
        tensor_proto_to_array(proto)
    with pytest.raises(InvalidInput, match="DT_COMPLEX64"):
        tensor_proto_to_array(tf.make_tensor_proto(np.ones(2, dtype=np.complex64)))
    with pytest.raises(InvalidInput, match="complex64"):
        array_to_tensor_proto(np.ones(2, dtype=np.complex64))


def test_tf_dtype_names(tf):
    for name in DTYPES + ["bool"]:
        assert tensors.tf_dtype(name) == tf.dtypes.as_dtype(name).as_datatype_enum
    with pytest.raises(ServingError):
        tensors.tf_dtype("complex64")
    with pytest.raises(ServingError):
        tensors.tf_dtype("no-such-type")


def test_content_length_mismatch(tf):
    proto = tf.make_tensor_proto(np.ones((2, 3), dtype=np.float32))
    proto.tensor_shape.dim[0].size = 3
    with pytest.raises(InvalidInput, match="needs 36"):
        tensor_proto_to_array(proto)


def test_too_many_values(pb):
    with pytest.raises(InvalidInput, match="holds only 2"):
        tensor_proto_to_array(_val_proto(pb, "float32", (2,), [1.0, 2.0, 3.0]))


def test_value_out_of_dtype_range(pb):
    with pytest.raises(InvalidInput, match="uint8"):
        tensor_proto_to_array(_val_proto(pb, "uint8", (2,), [1, 300]))


def test_unknown_dims_and_rank(pb):
    proto = _val_proto(pb, "float32", (-1, 2), [1.0])
    with pytest.raises(InvalidInput, match="unknown dimensions"):
        tensor_proto_to_array(proto)
    proto = _val_proto(pb, "float32", (), [1.0])
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidInput, match="unknown rank"):
        tensor_proto_to_array(proto)


def test_broadcast_bomb_is_refused(pb):
    proto = _val_proto(pb, "float32", (100_000, 28, 28), [0.0])
    with pytest.raises(PayloadTooLarge):
        tensor_proto_to_array(proto)
    assert tensor_proto_to_array(proto, max_elements=100_000 * 28 * 28).shape == (100_000, 28, 28)
    with pytest.raises(PayloadTooLarge):
        tensor_proto_to_array(_val_proto(pb, "float32", (4, 28, 28), [0.0]), max_elements=1000)


def test_scalar_and_empty_tensors(tf):
    scalar = array_to_tensor_proto(np.float32(3.5))
    assert tensor_proto_to_array(scalar).shape == () and float(tensor_proto_to_array(scalar)) == 3.5
    empty = array_to_tensor_proto(np.zeros((0, 28, 28), dtype=np.float32))
    np.testing.assert_array_equal(tensor_proto_to_array(empty), tf.make_ndarray(empty))


def test_big_endian_array_encodes_correctly(tf):
    arr = np.arange(6, dtype=">f4").reshape(2, 3)
    np.testing.assert_array_equal(tf.make_ndarray(array_to_tensor_proto(arr)), arr)

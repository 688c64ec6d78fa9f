from __future__ import annotations

import io
import os

import numpy as np
import pytest

from contract.errors import InvalidInput, PayloadTooLarge
from serving.protocols.codec import array_to_npy, npy_to_array, numbers_from_json

MiB = 1 << 20


# --- .npy -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64", ">f4", "bool"])
def test_npy_round_trip(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype) if dtype == "bool" else np.arange(24).reshape(2, 3, 4).astype(dtype)
    out = npy_to_array(array_to_npy(arr), MiB)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_npy_is_a_view_of_the_body_not_a_copy():
    data = array_to_npy(np.ones((100, 28, 28), dtype=np.uint8))
    out = npy_to_array(data, MiB)
    assert np.shares_memory(out, np.frombuffer(data, dtype=np.uint8))


def test_npy_fortran_order_is_honoured():
    arr = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(npy_to_array(array_to_npy(arr), MiB), arr)


def test_npy_reads_what_np_load_reads_for_numpy_save_output():
    arr = np.random.default_rng(1).random((5, 28, 28)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, arr)
    np.testing.assert_array_equal(npy_to_array(buf.getvalue(), MiB), np.load(io.BytesIO(buf.getvalue())))


def test_npy_pickle_is_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match="pickled .npy is not accepted"):
        npy_to_array(buf.getvalue(), MiB)


@pytest.mark.parametrize("body", [b"", b"not an npy at all", b"\x93NUMPY\x01\x00garbage", np.ones(3).tobytes()])
def test_npy_garbage_is_invalid_input(body):
    with pytest.raises(InvalidInput, match="not a valid .npy"):
        npy_to_array(body, MiB)


def test_npy_truncated_data_is_invalid_input():
    data = array_to_npy(np.ones((10, 28, 28), dtype=np.float32))
    with pytest.raises(InvalidInput, match="truncated"):
        npy_to_array(data[:-1], MiB)


def npy_with_header(shape: str, fortran: bool = False, data: bytes = b"\x00" * 100) -> bytes:
    """A .npy body whose header says ``shape`` (any text), with ``data`` after it."""
    header = f"{{'descr': '|u1', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


@pytest.mark.parametrize("shape", ["(-1, 28, 28)", "(1, -28, 28)", "(-1, -28, 28)", "(-2, 28, 28)", "(1, 28, -28)", "(-1,)"])
@pytest.mark.parametrize("fortran", [False, True])
def test_npy_negative_dimensions_are_invalid_input(shape, fortran):
    with pytest.raises(InvalidInput, match="negative dimensions"):
        npy_to_array(npy_with_header(shape, fortran), MiB)


def test_npy_huge_declared_shape_is_truncated_not_allocated():
    with pytest.raises(InvalidInput, match="truncated"):
        npy_to_array(npy_with_header("(1000000000, 1000000000, 28)"), MiB)


@pytest.mark.parametrize("arr", [np.array(["a", "b"]), np.ones(3, dtype=np.complex64), np.zeros(2, dtype="datetime64[s]")])
def test_npy_non_numeric_dtype_is_invalid_input(arr):
    with pytest.raises(InvalidInput, match="plain numeric array"):
        npy_to_array(array_to_npy(arr), MiB)


def test_npy_size_limit():
    data = array_to_npy(np.zeros((10, 28, 28), dtype=np.uint8))
    assert npy_to_array(data, len(data)).shape == (10, 28, 28)
    with pytest.raises(PayloadTooLarge, match=str(len(data) - 1)):
        npy_to_array(data, len(data) - 1)


# --- JSON numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([[1, 2], [3]], "rectangular"),
        ([1, [2]], "rectangular"),
        ([[[1, 2]], [3, 4]], "rectangular"),
        ([[1, True]], "bool"),
        ([["1", 2]], "str"),
        ([[None, 2]], "null"),
        ([[{"a": 1}]], "dict"),
        (5, "nested list"),
        ("abc", "nested list"),
        ([[2**80]], "too large"),
    ],
)
def test_json_numbers_reject(obj, match):
    with pytest.raises(InvalidInput, match=match):
        numbers_from_json(obj, "images", np.int64, np.float32)


def test_json_numbers_keep_integers_integral_unless_a_float_is_present():
    assert numbers_from_json([[0, 255]], "images", np.int64, np.float32).dtype == np.int64
    out = numbers_from_json([[0, 1.5], [-2, 3]], "z", np.int64, np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 1.5], [-2.0, 3.0]])


def test_codec_does_not_import_tensorflow_for_the_http_path():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from serving.protocols import codec;"
        "codec.numbers_from_json([[[0]*28]*28], 'images', np.int64, np.float32);"
        "codec.npy_to_array(codec.array_to_npy(np.zeros(3)), 1000);"
        "print('tensorflow' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

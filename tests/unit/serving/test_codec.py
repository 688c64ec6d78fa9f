from __future__ import annotations

import io
import os

import numpy as np
import pytest

from contract.errors import InvalidInput, PayloadTooLarge
from serving.protocols import codec
from serving.protocols.codec import (
    array_to_npy,
    floats_from_json,
    normalize_pixels,
    npy_to_array,
    pixels_from_json,
    validate_array,
)

IMAGES = {"name": "images", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]}
LATENT = {"name": "z", "dtype": "float32", "shape": [-1, 2], "range": None}
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


# --- validate_array -------------------------------------------------------------------


def test_validate_passes_float32_through_without_copy():
    arr = np.random.default_rng(3).random((4, 28, 28)).astype(np.float32)
    assert validate_array(arr, IMAGES, "images") is arr


def test_validate_converts_to_contiguous_float32():
    arr = np.random.default_rng(3).random((28, 28, 4)).transpose(2, 0, 1)  # float64, not contiguous
    out = validate_array(arr, IMAGES, "images")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, arr, rtol=1e-6)


@pytest.mark.parametrize(
    ("shape", "got"),
    [((3, 28, 27), "3 x 28 x 27"), ((28, 28), "28 x 28"), ((2, 28, 28, 1), "2 x 28 x 28 x 1"), ((), "a scalar")],
)
def test_validate_shape_message(shape, got):
    with pytest.raises(InvalidInput) as info:
        validate_array(np.zeros(shape, dtype=np.float32), IMAGES, "images")
    assert str(info.value) == f"images must have shape N x 28 x 28, got {got}"


def test_validate_rejects_ragged_sequences():
    with pytest.raises(InvalidInput, match="rectangular"):
        validate_array([[0.0, 1.0], [0.0]], LATENT, "z")


def test_validate_rejects_empty_batch():
    with pytest.raises(InvalidInput, match="at least one row"):
        validate_array(np.zeros((0, 28, 28), dtype=np.float32), IMAGES, "images")


@pytest.mark.parametrize("dtype", ["bool", "complex64", "<U1", "object"])
def test_validate_rejects_non_numeric(dtype):
    with pytest.raises(InvalidInput, match="numeric"):
        validate_array(np.zeros((1, 28, 28), dtype=dtype), IMAGES, "images")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_validate_rejects_non_finite_and_says_where(bad):
    arr = np.zeros((2, 2), dtype=np.float64)
    arr[1, 0] = bad
    with pytest.raises(InvalidInput, match=r"z contains 1 non-finite value.*index \[1, 0\]"):
        validate_array(arr, LATENT, "z")


def test_validate_range_reports_observed_min_max():
    arr = np.full((1, 28, 28), 0.5, dtype=np.float32)
    arr[0, 0, 0], arr[0, 1, 1] = -0.25, 1.5
    with pytest.raises(InvalidInput) as info:
        validate_array(arr, IMAGES, "images")
    assert str(info.value) == "images values must be within [0.0, 1.0], got min -0.25 and max 1.5"


def test_validate_range_hints_at_unscaled_integers():
    with pytest.raises(InvalidInput, match="divided by 255"):
        validate_array(np.full((1, 28, 28), 255, dtype=np.uint8), IMAGES, "images")


def test_validate_unbounded_spec_accepts_any_finite_value():
    out = validate_array([[1e6, -1e6]], LATENT, "z")
    assert out.dtype == np.float32 and out.shape == (1, 2)


# --- pixels ---------------------------------------------------------------------------


def test_normalize_integer_pixels():
    out = normalize_pixels(np.array([[0, 51, 255]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]])
    np.testing.assert_allclose(normalize_pixels(np.array([0, 255], dtype=np.int64)), [0.0, 1.0])


@pytest.mark.parametrize("values", [[0, 256], [-1, 3]])
def test_normalize_integer_out_of_range(values):
    with pytest.raises(InvalidInput, match="0..255"):
        normalize_pixels(np.array(values, dtype=np.int32))


def test_normalize_float_pixels_unchanged_and_not_copied():
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert normalize_pixels(arr) is arr
    assert normalize_pixels(arr.astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize("values", [[0.0, 255.0], [0.5, 1.0001], [-0.1, 0.5]])
def test_normalize_float_out_of_range_suggests_fix(values):
    with pytest.raises(InvalidInput, match="send integers 0..255 or scale floats to \\[0, 1\\]"):
        normalize_pixels(np.array(values, dtype=np.float32))


def test_normalize_rejects_nan_and_strings():
    with pytest.raises(InvalidInput, match="non-finite"):
        normalize_pixels(np.array([0.5, np.nan]))
    with pytest.raises(InvalidInput, match="numbers"):
        normalize_pixels(np.array(["1"]))


def test_pixels_from_json_integer_rule():
    out = pixels_from_json([[0, 255], [51, 102]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.2, 0.4]])
    # All-integer JSON is always the 0..255 scale, even when every value is 0 or 1.
    np.testing.assert_allclose(pixels_from_json([[0, 1]]), [[0.0, 1 / 255]])


def test_pixels_from_json_float_rule():
    np.testing.assert_allclose(pixels_from_json([[0.0, 1], [0.5, 0]]), [[0.0, 1.0], [0.5, 0.0]])
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        pixels_from_json([[0.5, 200]])


def test_pixels_from_json_image_batch_shape():
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28))
    out = pixels_from_json(images.tolist())
    assert out.shape == (3, 28, 28)
    assert validate_array(out, IMAGES, "images") is out


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
def test_pixels_from_json_rejects(obj, match):
    with pytest.raises(InvalidInput, match=match):
        pixels_from_json(obj)


def test_floats_from_json():
    out = floats_from_json([[0, 1.5], [-2, 3]], "z")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 1.5], [-2.0, 3.0]])
    assert floats_from_json([0.5, 1], "z").shape == (2,)
    with pytest.raises(InvalidInput, match="z contains 1 non-finite"):
        floats_from_json([[float("nan"), 0.0]], "z")
    with pytest.raises(InvalidInput, match="bool"):
        floats_from_json([[False, 0.0]], "z")


def test_codec_does_not_import_tensorflow_for_the_http_path():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from serving.protocols import codec;"
        "codec.validate_array(codec.pixels_from_json([[[0]*28]*28]), "
        "{'shape': [-1, 28, 28], 'dtype': 'float32', 'range': [0, 1]}, 'images');"
        "codec.npy_to_array(codec.array_to_npy(np.zeros(3)), 1000);"
        "print('tensorflow' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_check_rows_needs_one_row_and_honours_the_limit():
    codec.check_rows(np.zeros((3, 2)), 3, "z")
    with pytest.raises(InvalidInput, match="at least one row"):
        codec.check_rows(np.zeros((0, 2)), 3, "z")
    with pytest.raises(PayloadTooLarge, match="at most 3 z rows per request, got 4"):
        codec.check_rows(np.zeros((4, 2)), 3, "z")

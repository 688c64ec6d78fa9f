"""Wire formats <-> numpy in one place: .npy bodies, JSON arrays, TensorProto,
and the validation every input goes through before it may enter a batch.

TensorProto comes from the protos generated into ``contract.protos`` (never TensorFlow).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from contract.errors import InvalidInput, PayloadTooLarge

# --- .npy -------------------------------------------------------------------------------


def npy_to_array(data: bytes, max_bytes: int) -> np.ndarray:
    """Parse a ``.npy`` body without pickle and (for C/Fortran-ordered data) without copying.

    The result may be a read-only view of ``data``. Raises PayloadTooLarge over ``max_bytes``,
    InvalidInput for anything that is not a complete, plain numeric/bool ``.npy``.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f".npy body is {len(data)} bytes; at most {max_bytes} bytes are accepted")
    fmt = np.lib.format
    fp = io.BytesIO(data)
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise InvalidInput(f"body is not a valid .npy file ({e}); send the output of numpy.save") from e
    if dtype.hasobject:
        raise InvalidInput("pickled .npy is not accepted; send a plain numeric array")
    if dtype.kind not in "biuf":
        raise InvalidInput(f".npy dtype {dtype} is not accepted; send a plain numeric array (uint8 or float32)")
    if any(d < 0 for d in shape):
        raise InvalidInput(f".npy header declares negative dimensions {tuple(shape)}; send the output of numpy.save")
    count = math.prod(shape)
    offset = fp.tell()
    needed = count * dtype.itemsize
    if len(data) - offset < needed:
        raise InvalidInput(f".npy data is truncated: shape {tuple(shape)} of {dtype} needs {needed} bytes, got {len(data) - offset}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def array_to_npy(arr: np.ndarray) -> bytes:
    """``numpy.save`` of ``arr`` into bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def arrays_to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """``numpy.savez`` of named arrays into bytes (no pickle); ``numpy.load`` reads it back by name."""
    buf = io.BytesIO()
    np.savez(buf, **{name: np.asarray(a) for name, a in arrays.items()})  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return buf.getvalue()


# --- JSON pre-check ---------------------------------------------------------------------


def check_json_counts(body: bytes, max_values: int, max_arrays: int, rows: str) -> None:
    """Refuse, before parsing, a JSON body with more arrays or values than any request within the
    row limits can hold: parsing ten million tiny arrays costs seconds and hundreds of MB before a
    row check could refuse them. Counts ``[`` and ``,`` bytes (an upper bound; strings may hold some)."""
    arrays = body.count(b"[")
    if arrays > max_arrays:
        raise PayloadTooLarge(f"the JSON body holds {arrays} arrays; at most {max_arrays} fit {rows}")
    values = body.count(b",") + 1
    if values > max_values:
        raise PayloadTooLarge(f"the JSON body holds about {values} values; at most {max_values} fit {rows}")


# --- validation -------------------------------------------------------------------------


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join("N" if d == -1 or d is None else str(d) for d in shape)


def _min_max(arr: np.ndarray, what: str) -> tuple[float, float]:
    """min and max of a non-empty float array, raising InvalidInput if any value is NaN or inf."""
    # NaN propagates through min/max and an inf would be the min or the max, so two
    # reductions prove finiteness without a full boolean mask on the happy path.
    mn, mx = float(arr.min()), float(arr.max())
    if not (math.isfinite(mn) and math.isfinite(mx)):
        bad = ~np.isfinite(arr)
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInput(
            f"{what} contains {int(bad.sum())} non-finite value(s) (NaN or inf, or too large for float32), "
            f"the first at index {where}; expected finite numbers"
        )
    return mn, mx


def validate_array(arr: Any, spec: dict[str, Any], what: str) -> np.ndarray:
    """Check ``arr`` against one input spec of signature.json and return it as C-contiguous float32.

    Checks the number of dimensions and every non-batch dimension, a numeric dtype,
    at least one row, finite values and the spec's ``range``. No copy when ``arr`` is
    already C-contiguous float32.
    """
    try:
        arr = np.asarray(arr)
    except ValueError:  # ragged nested sequences
        raise InvalidInput(f"{what} must be a rectangular array (every row the same length)") from None
    expected = list(spec["shape"])
    if arr.dtype.kind not in "iuf":
        raise InvalidInput(f"{what} must be a numeric array, got dtype {arr.dtype}")
    ok_shape = arr.ndim == len(expected) and all(e in (-1, None) or e == a for e, a in zip(expected, arr.shape))
    if not ok_shape:
        got = _shape_text(arr.shape) if arr.ndim else "a scalar"
        raise InvalidInput(f"{what} must have shape {_shape_text(expected)}, got {got}")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{what} must hold at least one row, got shape {_shape_text(arr.shape)}")
    target = np.dtype(spec.get("dtype") or "float32")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=target)
    bounds = spec.get("range")
    if out.dtype.kind == "f":
        mn, mx = _min_max(out, what)
    elif bounds is not None:
        mn, mx = float(out.min()), float(out.max())
    if bounds is not None:
        lo, hi = bounds
        if mn < lo or mx > hi:
            hint = "; integer pixels 0..255 must be divided by 255" if arr.dtype.kind in "iu" and hi <= 1 < mx else ""
            raise InvalidInput(f"{what} values must be within [{lo}, {hi}], got min {mn:g} and max {mx:g}{hint}")
    return out


def check_rows(arr: np.ndarray, limit: int, what: str) -> None:
    """At least one row along the batch axis, and at most ``limit`` (a configured per-request bound)."""
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise InvalidInput(f"{what} must hold at least one row")
    if arr.shape[0] > limit:
        raise PayloadTooLarge(f"at most {limit} {what} rows per request, got {arr.shape[0]}")


def normalize_pixels(arr: Any, what: str = "images") -> np.ndarray:
    """Pixels to float32 in [0, 1] by the documented rule.

    Integer dtypes mean 0..255 and are divided by 255 (values outside -> InvalidInput);
    float dtypes must already be finite and within [0, 1]. No copy for float32 input.
    """
    arr = np.asarray(arr)
    kind = arr.dtype.kind
    if kind in "iu":
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 255:
                raise InvalidInput(f"integer {what} must be within 0..255, got min {lo} and max {hi}")
        scaled: np.ndarray = arr.astype(np.float32)
        scaled /= 255.0
        return scaled
    if kind == "f":
        out = np.asarray(arr, dtype=np.float32)
        if out.size:
            mn, mx = _min_max(out, what)
            if mn < 0.0 or mx > 1.0:
                raise InvalidInput(
                    f"float {what} must be within [0, 1], got min {mn:g} and max {mx:g}; send integers 0..255 or scale floats to [0, 1]"
                )
        return out
    raise InvalidInput(f"{what} must be numbers (integers 0..255 or floats in [0, 1]), got dtype {arr.dtype}")


def numbers_from_json(obj: Any, what: str, integral_dtype: Any, float_dtype: Any) -> np.ndarray:
    """Nested JSON lists of numbers as an array: ``integral_dtype`` when every value is a JSON int."""
    if not isinstance(obj, (list, tuple)):
        raise InvalidInput(f"{what} must be a nested list of numbers, got {type(obj).__name__}")
    # Type check per innermost list with one C-level map: a 256 x 28 x 28 request is ~7k lists.
    types: set[type] = set()
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            if item and isinstance(item[0], (list, tuple)):
                stack.extend(item)
            else:
                types.update(map(type, item))
        else:
            types.add(type(item))
    if types & {list, tuple}:
        raise InvalidInput(f"{what} must be a rectangular nested list (every row the same length)")
    if not types <= {int, float}:
        bad = sorted(t.__name__ if t is not type(None) else "null" for t in types - {int, float})
        raise InvalidInput(f"{what} must contain only numbers, found {', '.join(bad)}")
    try:
        with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, reported as non-finite later
            return np.array(obj, dtype=float_dtype if float in types else integral_dtype)
    except OverflowError:
        raise InvalidInput(f"{what} holds an integer too large to represent") from None
    except (ValueError, TypeError):
        raise InvalidInput(f"{what} must be a rectangular nested list (every row the same length)") from None


def pixels_from_json(obj: Any, what: str = "images") -> np.ndarray:
    """Nested JSON lists of pixels as float32 in [0, 1].

    All values JSON integers -> 0..255, divided by 255; any float present -> every value
    must be in [0, 1]. Ragged lists, booleans, strings and nulls -> InvalidInput.
    """
    return normalize_pixels(numbers_from_json(obj, what, np.int64, np.float32), what)


def floats_from_json(obj: Any, what: str) -> np.ndarray:
    """Nested JSON lists of numbers (ints or floats) as float32, e.g. latent points; finiteness is checked."""
    arr = numbers_from_json(obj, what, np.float32, np.float32)
    if arr.size:
        _min_max(arr, what)
    return arr

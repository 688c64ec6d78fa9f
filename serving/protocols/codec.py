"""Wire formats <-> numpy that several fronts share: ``.npy`` and ``.npz`` bodies, JSON arrays of numbers.

Decoding only: what a model accepts is the data plane's rule (serving/core/rules.py).
"""

from __future__ import annotations

import io
import math
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


# --- JSON numbers ----------------------------------------------------------------------


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

"""TensorFlow ``TensorProto`` <-> numpy, for the TF-Serving gRPC API on both sides (server and clients).

The messages come from ``contract.protos`` (generated, no TensorFlow).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .errors import InvalidInput, PayloadTooLarge, ServingError

# Broadcasting a short *_val list to its declared shape allocates the full tensor, so a
# tiny message could ask for gigabytes; refuse more elements than this by default.
DEFAULT_MAX_ELEMENTS = 1 << 26


@functools.cache
def _dtype_tables() -> tuple[dict[int, tuple[np.dtype[Any], str]], dict[np.dtype[Any], int]]:
    from .protos.tensorflow.core.framework import types_pb2

    # DataType -> (numpy dtype, the repeated field TF writes when tensor_content is not used)
    to_numpy: dict[int, tuple[np.dtype[Any], str]] = {
        types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
        types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
        types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
        types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
        types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
        types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
        types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
        types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
        types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
        types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
        types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
        types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    }
    from_numpy = {np_dtype: dt for dt, (np_dtype, _) in to_numpy.items()}
    return to_numpy, from_numpy


def tf_dtype(name: str) -> int:
    """The ``types_pb2.DataType`` enum for a numpy dtype name from signature.json (``"float32"`` -> DT_FLOAT)."""
    _, from_numpy = _dtype_tables()
    if name == "object":  # a BYTES output (signature.json's name for it): strings
        from .protos.tensorflow.core.framework import types_pb2

        return int(types_pb2.DT_STRING)
    try:
        return from_numpy[np.dtype(name)]
    except (KeyError, TypeError) as e:
        # signature.json is ours, so an unknown dtype there is a server fault, not the caller's.
        raise ServingError(f"dtype {name!r} has no TensorFlow DataType this server supports") from e


def numpy_dtype(dt: int) -> np.dtype[Any] | None:
    """The numpy dtype of a ``types_pb2.DataType`` (None for the ones this module does not read)."""
    entry = _dtype_tables()[0].get(dt)
    return entry[0] if entry else None


def dtype_name(dt: int) -> str:
    from .protos.tensorflow.core.framework import types_pb2

    try:
        return str(types_pb2.DataType.Name(dt))
    except ValueError:
        return f"unknown DataType {dt}"


def tensor_proto_to_array(proto: Any, max_elements: int | None = None, fit: bool = True) -> np.ndarray:
    """A ``tensorflow.TensorProto`` as a numpy array, with ``tf.make_ndarray``'s semantics.

    Reads ``tensor_content`` when present (zero-copy, read-only), otherwise the typed
    ``*_val`` field; a shorter ``*_val`` list is padded with its last value (so one value
    broadcasts to the whole shape) and an empty one means zeros. Raises InvalidInput for
    unsupported dtypes and size mismatches, PayloadTooLarge over ``max_elements``. With ``fit``
    False, integer ``*_val`` values come back as int64 for the caller to check against the dtype.
    """
    to_numpy, _ = _dtype_tables()
    entry = to_numpy.get(proto.dtype)
    if entry is None:
        raise InvalidInput(f"tensor dtype {dtype_name(proto.dtype)} is not supported; send DT_FLOAT (or another real numeric / bool dtype)")
    dtype, field = entry
    if proto.tensor_shape.unknown_rank:
        raise InvalidInput("tensor shape has unknown rank; send a fully defined shape")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"tensor shape {list(shape)} has unknown dimensions; send a fully defined shape")
    count = math.prod(shape)
    limit = DEFAULT_MAX_ELEMENTS if max_elements is None else max_elements
    if count > limit:
        raise PayloadTooLarge(f"tensor shape {list(shape)} has {count} elements; at most {limit} are accepted")

    content = proto.tensor_content
    if content:
        if len(content) != count * dtype.itemsize:
            raise InvalidInput(
                f"tensor_content has {len(content)} bytes, but shape {list(shape)} of "
                f"{dtype_name(proto.dtype)} needs {count * dtype.itemsize}"
            )
        # TF writes tensor_content in host order, little-endian on every platform it ships for.
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)

    values = getattr(proto, field)
    n = len(values)
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    if n > count:
        raise InvalidInput(f"{field} has {n} values, but shape {list(shape)} holds only {count}")
    if field == "half_val":
        # half_val holds the IEEE binary16 bit patterns in int32 slots.
        flat = np.fromiter(values, dtype=np.int64, count=n).astype(np.uint16).view(np.float16)
    elif field == "bool_val":
        flat = np.fromiter(values, dtype=np.bool_, count=n)
    elif dtype.kind in "iu":
        wide = np.fromiter(values, dtype=np.uint64 if dtype == np.uint64 else np.int64, count=n)
        if not fit:
            return (np.pad(wide, (0, count - n), mode="edge") if n < count else wide).reshape(shape)
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInput(f"{field} values range {wide.min()}..{wide.max()}, outside {dtype} ({info.min}..{info.max})")
        flat = wide.astype(dtype)
    else:
        flat = np.fromiter(values, dtype=dtype, count=n)
    if n < count:
        flat = np.pad(flat, (0, count - n), mode="edge")
    return flat.reshape(shape)


def array_to_tensor_proto(arr: np.ndarray) -> Any:
    """A numpy array as a ``tensorflow.TensorProto`` using ``tensor_content`` (what ``tf.make_ndarray`` reads)."""
    from .protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    arr = np.asarray(arr)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in arr.shape])
    if arr.dtype.kind == "O":  # bytes (a BYTES output): DT_STRING, one string_val per element
        from .protos.tensorflow.core.framework import types_pb2

        values = [v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel()]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    _, from_numpy = _dtype_tables()
    dt = from_numpy.get(arr.dtype.newbyteorder("="))
    if dt is None:
        raise InvalidInput(f"dtype {arr.dtype} cannot be sent as a TensorProto; use a real numeric or bool array")
    content = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return tensor_pb2.TensorProto(dtype=dt, tensor_shape=shape, tensor_content=content)  # type: ignore[arg-type]  # an int DataType

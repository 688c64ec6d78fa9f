"""The input rules, applied by the data plane to every tensor of every protocol, in one order with one message each.

Every rule comes from the model's ``signature.json`` (input name, dtype, shape with a variable batch
axis, value range) and its kind (pixels, row limit), never from the name an input happens to have:

1. the name, when the request names its input, is the signature's;
2. the datatype is FP32, or for pixel inputs also UINT8 (0..255, divided by 255); FP64, INT64 and
   the rest are refused, so no value is silently rounded;
3. the shape is the signature's, with one row allowed without its batch axis and a trailing channel
   axis of size 1 allowed to be left out; at least one row, at most the kind's row limit;
4. (values decoded only now) integers fit their datatype; floats are finite and within the range.

The result is C-contiguous float32 rows of the signature's shape, ready for a batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from contract.errors import InvalidInput, PayloadTooLarge

from .request import Tensor
from .runtime import ModelRuntime


def shape_text(shape: Any) -> str:
    return " x ".join("N" if d in (-1, None) else str(d) for d in shape) if len(shape) else "a scalar"


def accepted_datatypes(rt: ModelRuntime) -> tuple[str, ...]:
    """FP32 for every float32 input; pixel inputs also take UINT8 0..255."""
    return ("UINT8", "FP32") if rt.kind.pixels else ("FP32",)


def row_shape(rt: ModelRuntime, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """``shape`` as the signature's full shape (batch axis first), or None when it cannot be one.

    Two conveniences, on every protocol: one row may come without its batch axis, and a trailing
    channel axis of size 1 (the encoder's N x 28 x 28 x 1) may be left out.
    """
    expected = list(rt.input_spec["shape"])
    rows = expected[1:]
    candidates = [rows]
    if rows and rows[-1] == 1:
        candidates.append(rows[:-1])
    for row in candidates:
        full = len(shape) == len(row) + 1 and all(e in (-1, None) or e == d for e, d in zip(row, shape[1:]))
        single = len(shape) == len(row) and all(e in (-1, None) or e == d for e, d in zip(row, shape))
        if full or single:
            batch = shape[0] if full else 1
            return (batch, *(d if e in (-1, None) else e for e, d in zip(rows, (*(shape[1:] if full else shape), 1))))
    return None


def check_header(rt: ModelRuntime, tensor: Tensor, limit: int) -> tuple[int, ...]:
    """Rules 1-3 (nothing decoded yet): the tensor's full shape for the model."""
    spec = rt.input_spec
    name = spec["name"]
    if tensor.name is not None and tensor.name != name:
        raise InvalidInput(f"model {rt.store_name} has no input {tensor.name[:100]!r}; its input is {name!r}")
    allowed = accepted_datatypes(rt)
    if tensor.datatype not in allowed:
        pixels = " (pixels 0..255)" if "UINT8" in allowed else ""
        hint = f"UINT8{pixels} or FP32 in [0, 1]" if rt.kind.pixels else "FP32"
        raise InvalidInput(f"input {name!r} of model {rt.store_name} takes datatype {hint}, got {str(tensor.datatype)[:20]}")
    shape = tensor.shape
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {str(list(shape))[:100]}")
    full = row_shape(rt, tuple(shape))
    if full is None:
        raise InvalidInput(f"input {name!r} of model {rt.store_name} must have shape {shape_text(spec['shape'])}, got {shape_text(shape)}")
    if full[0] == 0:
        raise InvalidInput(f"input {name!r} must hold at least one row, got shape {shape_text(shape)}")
    if full[0] > limit:
        raise PayloadTooLarge(f"at most {limit} {rt.kind.rows} per request for model {rt.store_name}, got {full[0]}")
    return full


def _min_max(arr: np.ndarray, name: str) -> tuple[float, float]:
    """min and max of a non-empty float array, refusing NaN and inf."""
    # NaN propagates through min/max and an inf would be the min or the max, so two
    # reductions prove finiteness without a full boolean mask on the happy path.
    mn, mx = float(arr.min()), float(arr.max())
    if not (math.isfinite(mn) and math.isfinite(mx)):
        bad = ~np.isfinite(arr)
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInput(
            f"input {name!r} contains {int(bad.sum())} non-finite value(s) (NaN or inf, or too large for FP32), "
            f"the first at index {where}; expected finite numbers"
        )
    return mn, mx


def rows(rt: ModelRuntime, tensor: Tensor, full: tuple[int, ...]) -> np.ndarray:
    """Rule 4 on the decoded values: float32 rows of ``full`` shape."""
    spec = rt.input_spec
    name = spec["name"]
    arr = np.asarray(tensor.array())
    if arr.size != math.prod(full):
        raise InvalidInput(f"input {name!r}: shape {shape_text(tensor.shape)} holds {math.prod(full)} elements, but {arr.size} were sent")
    if arr.dtype.kind not in "iuf":
        raise InvalidInput(f"input {name!r} must hold numbers, got {arr.dtype}")
    target = np.dtype(spec.get("dtype") or "float32")
    if tensor.datatype == "UINT8":
        if arr.dtype.kind not in "iu":
            raise InvalidInput(f"input {name!r} is UINT8: its values must be integers 0..255")
        if arr.dtype != np.uint8 and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 255:
                raise InvalidInput(f"input {name!r} is UINT8: its values must be within 0..255, got min {lo} and max {hi}")
        out: np.ndarray = arr.reshape(full).astype(target)
        out /= 255.0
        return out
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 becomes inf: reported as non-finite
        out = np.ascontiguousarray(arr.reshape(full), dtype=target)
    mn, mx = _min_max(out, name)
    bounds = spec.get("range")
    if bounds is not None:
        lo_b, hi_b = bounds
        if mn < lo_b or mx > hi_b:
            hint = "; send pixels as UINT8 0..255, or as FP32 divided by 255" if rt.kind.pixels else ""
            raise InvalidInput(f"input {name!r} values must be within [{lo_b:g}, {hi_b:g}], got min {mn:g} and max {mx:g}{hint}")
    return out

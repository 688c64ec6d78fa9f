"""Open Inference Protocol (KServe v2 / Triton): what its REST and gRPC fronts share.

Model lookup by name and version, model metadata and config from ``signature.json``, and
the tensor rules: a v2 input (``datatype``, ``shape`` and either JSON/typed ``data`` or raw
little-endian bytes) becomes validated float32 rows for the engine, and the engine's arrays
become v2 outputs. Sizes declared by a request are checked against the configured limits
and against the payload actually sent before anything is allocated.

Pixel inputs (``images``) take ``UINT8`` 0..255 or ``FP32`` in [0, 1], the pixel rule of the
``/v1`` API; every other input (a decoder's ``z``) takes ``FP32``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.errors import InvalidInput, PayloadTooLarge
from serving.core.engine import Engine
from serving.core.runtime import ModelRuntime
from serving.protocols import codec

SERVER_NAME = "digits"
PLATFORM = "onnxruntime_onnx"
# Extensions of the protocol this server implements (Triton's names, as ServerMetadata lists them).
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "model_repository")

# v2 datatype -> numpy dtype (little-endian, as the binary extension and raw contents are).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("uint8"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("int8"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
_V2_OF_NUMPY = {dt.newbyteorder("="): name for name, dt in DATATYPES.items()}


def datatype_of(dtype: np.dtype[Any]) -> str:
    return _V2_OF_NUMPY[dtype.newbyteorder("=")]


def accepted_datatypes(rt: ModelRuntime) -> tuple[str, ...]:
    return ("UINT8", "FP32") if rt.input_spec["name"] == "images" else ("FP32",)


# ---------------------------------------------------------------- server and models


def server_metadata() -> dict[str, Any]:
    from importlib.metadata import version

    return {"name": SERVER_NAME, "version": version("rnn-vae-serving"), "extensions": list(EXTENSIONS)}


def find_model(engine: Engine, name: str, version: str | None) -> ModelRuntime:
    """A served model by store name (``mnist-lstm``) or public name (``lstm``, ``vae2`` = the decoder).

    ``version`` may be a version number (what ``versions`` lists), a store tag or a label;
    empty means the ``stable`` label when set, else the newest served version.
    """
    return engine.registry.find(name, version or None)


def _tensor_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": spec["name"], "datatype": datatype_of(np.dtype(spec["dtype"])), "shape": list(spec["shape"])}


def model_metadata(engine: Engine, rt: ModelRuntime) -> dict[str, Any]:
    """The protocol's model metadata: name, served versions (newest first), platform, input and output tensors."""
    served = sorted({v.version_number for v in engine.registry.versions_of(rt.store_name)} | {rt.version_number}, reverse=True)
    return {
        "name": rt.store_name,
        "versions": [str(n) for n in served],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(s) for s in rt.signature["inputs"]],
        "outputs": [_tensor_metadata(s) for s in rt.signature["outputs"]],
    }


def model_config(engine: Engine, rt: ModelRuntime) -> dict[str, Any]:
    """Triton's model configuration (its JSON form): what ``perf_analyzer`` and ``model-analyzer`` read.

    ``max_batch_size`` is the most rows one request may carry (Triton's meaning), not the batcher's
    merge size. ``parameters`` say what the service knows of the model beyond tensors: its task,
    public name, and whether it is its task's default (what clients use to list the catalog).
    """

    def tensors(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"name": s["name"], "data_type": "TYPE_" + datatype_of(np.dtype(s["dtype"])), "dims": list(s["shape"][1:])} for s in specs]

    parameters = {"task": rt.task, "public_name": rt.public_name, "default": "true" if engine.is_default(rt) else "false"}
    return {
        "name": rt.store_name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": row_limit(engine, rt),
        "input": tensors(rt.signature["inputs"]),
        "output": tensors(rt.signature["outputs"]),
        "dynamic_batching": {},
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
    }


# ---------------------------------------------------------------- inputs


def row_limit(engine: Engine, rt: ModelRuntime) -> int:
    s = engine.settings
    return s.max_generate_n if rt.task == "generation" else s.max_images_per_request


def check_input_header(
    engine: Engine, rt: ModelRuntime, name: str, datatype: str, shape: list[Any]
) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """Name, datatype and shape of one input against the model and the limits; nothing allocated yet."""
    spec = rt.input_spec
    if name != spec["name"]:
        raise InvalidInput(f"model {rt.store_name} has no input {name[:100]!r}; its input is {spec['name']!r}")
    allowed = accepted_datatypes(rt)
    if datatype not in allowed:
        raise InvalidInput(f"input {name!r} of model {rt.store_name} takes datatype {' or '.join(allowed)}, got {str(datatype)[:20]!r}")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {str(shape)[:100]}")
    expected = spec["shape"]
    if len(shape) != len(expected) or any(e not in (-1, None) and e != d for e, d in zip(expected, shape)):
        want = "[" + ", ".join("N" if e in (-1, None) else str(e) for e in expected) + "]"
        raise InvalidInput(f"input {name!r} of model {rt.store_name} must have shape {want}, got {list(shape)}")
    limit = row_limit(engine, rt)
    if shape[0] > limit:
        raise PayloadTooLarge(f"at most {limit} {name} rows per request, got {shape[0]}")
    if shape[0] == 0:
        raise InvalidInput(f"input {name!r} must hold at least one row, got shape {list(shape)}")
    return DATATYPES[datatype], tuple(shape)


def array_from_json(name: str, dtype: np.dtype[Any], shape: tuple[int, ...], data: Any) -> np.ndarray:
    """JSON ``data`` (row-major, flat or nested) as an array of ``shape``."""
    if data is None:
        raise InvalidInput(f"input {name!r} has no data: send 'data' or binary data (parameters.binary_data_size)")
    integral = dtype.kind in "iub"
    arr = codec.numbers_from_json(data if isinstance(data, list) else [data], f"input {name!r} data", np.int64, np.float64)
    if integral and arr.dtype.kind == "f":
        raise InvalidInput(f"input {name!r} is {datatype_of(dtype)}: its data must be integers")
    return shaped(name, dtype, shape, arr.ravel())


def array_from_bytes(name: str, dtype: np.dtype[Any], shape: tuple[int, ...], raw: bytes | memoryview) -> np.ndarray:
    """Raw little-endian row-major bytes (binary extension, ``raw_input_contents``) as an array of ``shape``."""
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} of {datatype_of(dtype)} needs {needed} bytes of data, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def shaped(name: str, dtype: np.dtype[Any], shape: tuple[int, ...], flat: np.ndarray) -> np.ndarray:
    """Flat values (JSON ``data``, gRPC typed ``contents``) as ``dtype`` of ``shape``: count and integer range checked."""
    if flat.size != math.prod(shape):
        raise InvalidInput(f"input {name!r}: shape {list(shape)} holds {math.prod(shape)} elements, but data has {flat.size}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if flat.size and (flat.min() < info.min or flat.max() > info.max):
            raise InvalidInput(f"input {name!r}: {datatype_of(dtype)} values must be within {info.min}..{info.max}")
    return flat.astype(dtype, copy=False).reshape(shape)


def to_rows(rt: ModelRuntime, name: str, arr: np.ndarray) -> np.ndarray:
    """A decoded input as the float32 rows the engine takes (UINT8 pixels / 255, ranges and finiteness checked)."""
    if rt.input_spec["name"] == "images":
        arr = codec.normalize_pixels(arr, name)
    return codec.validate_array(arr, rt.input_spec, name)


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Output:
    """One requested output: its name and, for the classification extension, how many top classes."""

    name: str
    classes: int = 0
    binary: bool | None = None  # REST binary extension: None = the request's default


def check_outputs(rt: ModelRuntime, requested: list[Output] | None) -> list[Output]:
    """The outputs to return (every output when none is requested)."""
    known = rt.output_names
    if not requested:
        return [Output(n) for n in known]
    unknown = [o.name[:100] for o in requested if o.name not in known]
    if unknown:
        raise InvalidInput(f"model {rt.store_name} has no output(s) {unknown}; its outputs are {known}")
    for o in requested:
        if o.classes and (rt.task != "classification" or o.classes < 0):
            raise InvalidInput(
                f"output {o.name!r}: the classification parameter applies to a classifier's probabilities, with a count >= 1"
            )
    return requested


def output_array(rt: ModelRuntime, out: Output, arrays: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """(datatype, array) of one output; for ``classification: k`` the top k as ``"score:index:label"`` BYTES."""
    arr = arrays[out.name]
    if not out.classes:
        return datatype_of(arr.dtype), arr
    k = min(out.classes, arr.shape[-1])
    labels = rt.signature.get("labels") or []
    top = np.argsort(-arr, axis=-1, kind="stable")[:, :k]
    strings = [
        [f"{row[i]:f}:{i}:{labels[i]}".encode() if i < len(labels) else f"{row[i]:f}:{i}".encode() for i in idx]
        for row, idx in zip(arr, top)
    ]
    return BYTES, np.array(strings, dtype=object)


def serialize_bytes(arr: np.ndarray) -> bytes:
    """A BYTES tensor in the protocol's binary form: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(len(b).to_bytes(4, "little") + b for b in arr.ravel())


def raw_bytes(datatype: str, arr: np.ndarray) -> bytes:
    if datatype == BYTES:
        return serialize_bytes(arr)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


async def infer(engine: Engine, rt: ModelRuntime, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``rt`` by name, computed in the model's shared batches."""
    return dict(zip(rt.output_names, await engine.infer(rt, rows)))

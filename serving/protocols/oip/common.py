"""Open Inference Protocol (KServe v2 / Triton): what its REST and gRPC fronts share.

Server and model metadata and Triton's model configuration from ``signature.json`` and the model's
kind; a v2 input's header and data as the data plane's :class:`~serving.core.request.Tensor`
(typed JSON/``contents`` values, or raw little-endian bytes decoded only once the header passed
the rules); outputs in the protocol's binary form. Which datatypes, shapes and values a model
takes is the data plane's to decide.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from contract import triton
from contract.errors import InvalidInput
from serving.core import verdict
from serving.core.dataplane import DataPlane
from serving.core.kinds import Decoder
from serving.core.request import BYTES, DATATYPES, Tensor, datatype_of
from serving.core.runtime import ModelRuntime
from serving.protocols import codec

SERVER_NAME = "digits"
PLATFORM = triton.PLATFORM
# Extensions of the protocol this server implements (Triton's names, as ServerMetadata lists them).
EXTENSIONS = (
    "binary_tensor_data",
    "classification",
    "logging",
    "model_configuration",
    "model_repository",
    "statistics",
    "system_shared_memory",
    "trace",
)


def server_metadata() -> dict[str, Any]:
    from importlib.metadata import version

    return {"name": SERVER_NAME, "version": version("rnn-vae-serving"), "extensions": list(EXTENSIONS)}


def _tensor_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": spec["name"], "datatype": datatype_of(np.dtype(spec["dtype"])), "shape": list(spec["shape"])}


def model_metadata(plane: DataPlane, rt: ModelRuntime) -> dict[str, Any]:
    """The protocol's model metadata: name, served versions (newest first), platform, input and output tensors."""
    served = sorted({v.version_number for v in plane.engine.registry.versions_of(rt.store_name)} | {rt.version_number}, reverse=True)
    return {
        "name": rt.store_name,
        "versions": [str(n) for n in served],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(s) for s in rt.signature["inputs"]],
        "outputs": [_tensor_metadata(s) for s in rt.signature["outputs"]],
    }


def model_config(plane: DataPlane, rt: ModelRuntime) -> dict[str, Any]:
    """Triton's model configuration (its JSON form): what ``perf_analyzer`` and ``model-analyzer`` read.

    ``max_batch_size`` is the most rows one request may carry (Triton's meaning), not the batcher's
    merge size. ``parameters`` say what the service knows of the model beyond tensors: its kind and
    task, public name, whether it is its task's default (what clients use to list the catalog), and
    for decoders the largest manifold side (what a client must keep to, over any protocol).
    """

    parameters = {
        "task": rt.task,
        "kind": rt.kind.name,
        "public_name": rt.public_name,
        "default": "true" if plane.engine.is_default(rt) else "false",
        "metrics": json.dumps(rt.metadata.get("metrics", {}), sort_keys=True),  # as /v1/models gives them
        "provider": rt.provider or "",
    }
    if rt.kind.classifies:  # outputs a request may name beyond the model's own (serving/core/verdict.py)
        parameters["verdict_outputs"] = ",".join(verdict.NAMES)
    if rt.kind is Decoder:
        parameters["max_manifold_n"] = str(plane.settings.max_manifold_n)
    return triton.model_config(
        rt.store_name,
        rt.signature,
        max_batch_size=plane.row_limit(rt),
        max_queue_delay_us=round(plane.settings.queue_delay_ms * 1000),
        warmup=(),
        labels=False,
        parameters=parameters,
    )


# ---------------------------------------------------------------- inputs


def header_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {str(shape)[:100]}")
    return tuple(shape)


def json_tensor(name: str, datatype: str, shape: Any, data: Any) -> Tensor:
    """An input with JSON ``data`` (row-major, flat or nested), decoded once the header has passed."""
    if data is None:
        raise InvalidInput(f"input {name!r} has no data: send 'data' or binary data (parameters.binary_data_size)")
    values = data if isinstance(data, list) else [data]
    return Tensor(
        name,
        str(datatype),
        header_shape(name, shape),
        lambda: codec.numbers_from_json(values, f"input {name!r} data", np.int64, np.float64),
    )


def raw_tensor(name: str, datatype: str, shape: Any, raw: bytes | memoryview) -> Tensor:
    """An input of raw little-endian row-major bytes (binary extension, ``raw_input_contents``)."""
    dims = header_shape(name, shape)

    def decode() -> np.ndarray:
        dtype = DATATYPES[datatype]
        needed = math.prod(dims) * dtype.itemsize
        if len(raw) != needed:
            raise InvalidInput(f"input {name!r}: shape {list(dims)} of {datatype} needs {needed} bytes of data, got {len(raw)}")
        return np.frombuffer(raw, dtype=dtype).reshape(dims)

    return Tensor(name, str(datatype), dims, decode)


SHM_REGION, SHM_SIZE, SHM_OFFSET = "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"


def shm_input(plane: DataPlane, name: str, datatype: str, shape: Any, parameters: dict[str, Any]) -> Tensor | None:
    """An input whose bytes are in a registered system shared memory region (None when they are not)."""
    region = parameters.get(SHM_REGION)
    if region is None:
        return None
    if SHM_SIZE not in parameters:
        raise InvalidInput(f"input {name!r}: {SHM_REGION} needs {SHM_SIZE}")
    raw = plane.shared_memory.read(str(region), parameters.get(SHM_OFFSET, 0), parameters[SHM_SIZE], f"input {name!r}")
    return raw_tensor(name, datatype, shape, raw)


def shm_output(parameters: dict[str, Any], name: str) -> tuple[str, Any, Any] | None:
    """(region, offset, byte size) an output is to be written to, or None to send it back."""
    region = parameters.get(SHM_REGION)
    if region is None:
        return None
    if SHM_SIZE not in parameters:
        raise InvalidInput(f"output {name!r}: {SHM_REGION} needs {SHM_SIZE}")
    return str(region), parameters.get(SHM_OFFSET, 0), parameters[SHM_SIZE]


def write_shm_output(plane: DataPlane, target: tuple[str, Any, Any], name: str, arr: np.ndarray) -> tuple[str, dict[str, Any]]:
    """Write an output into its region: (datatype, the parameters its answer carries instead of data)."""
    datatype, raw = raw_bytes(arr)
    region, offset, size = target
    plane.shared_memory.write(region, offset, size, raw, f"output {name!r}")
    return datatype, {SHM_REGION: region, SHM_SIZE: len(raw), **({SHM_OFFSET: offset} if offset else {})}


def regions_status(plane: DataPlane, name: str | None) -> list[dict[str, Any]]:
    return [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in plane.shared_memory.status(name)]


# ---------------------------------------------------------------- outputs


def serialize_bytes(arr: np.ndarray) -> bytes:
    """A BYTES tensor in the protocol's binary form: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(len(b).to_bytes(4, "little") + b for b in arr.ravel())


def raw_bytes(arr: np.ndarray) -> tuple[str, bytes]:
    """(datatype, raw little-endian bytes) of an output."""
    datatype = datatype_of(arr.dtype)
    if datatype == BYTES:
        return datatype, serialize_bytes(arr)
    return datatype, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()

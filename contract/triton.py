"""Triton's model configuration of a stored model, written from its ``signature.json``: the one writer.

:func:`model_config` gives Triton's ``inference.ModelConfig`` in its JSON form (what Triton's
``GET /v2/models/<name>/config`` answers); :func:`config_pbtxt` renders it as the ``config.pbtxt``
of a Triton model repository, through the generated ``model_config_pb2``, so what is written is what
Triton parses. The batching defaults are the served engine's (``serving.settings``): at most
``MAX_BATCH_SIZE`` rows in one model call, and no queue delay (an idle model runs a lone request at
once; requests that arrive while it computes join its next call).

Standard library at import (the benchmark's Triton peer imports it in its own venv); protobuf only
inside :func:`config_message` and :func:`config_pbtxt`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contract.protos.inference.model_config_pb2 import ModelConfig

MAX_BATCH_SIZE = 64  # SERVING_MAX_BATCH_SIZE's default
MAX_QUEUE_DELAY_US = 0  # SERVING_QUEUE_DELAY_MS's default: a batch never waits for company
WARMUP_BATCH_SIZES = (1, 8)  # as serving warms up a runtime
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
LABELS_FILE = "labels.txt"  # Triton's classification extension reads the class names from it
DATA_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "object": "TYPE_STRING",  # BYTES (a classifier's served ``reason``)
}


class TritonConfigError(ValueError):
    """A signature (or a batching setting) that a Triton model configuration cannot express."""


def tensor(spec: Mapping[str, Any], model: str) -> dict[str, Any]:
    """One signature tensor as Triton's ``ModelInput`` / ``ModelOutput``: name, data type, dims without the batch axis."""
    shape = list(spec["shape"])
    if not shape or shape[0] != -1 or any(not isinstance(d, int) or d < 1 for d in shape[1:]):
        raise TritonConfigError(f"{model}: {spec['name']} has shape {shape}; expected a variable batch axis 0 and fixed other axes")
    try:
        data_type = DATA_TYPES[spec["dtype"]]
    except KeyError:
        raise TritonConfigError(f"{model}: {spec['name']} has dtype {spec['dtype']!r}, which Triton has no type for") from None
    return {"name": spec["name"], "data_type": data_type, "dims": shape[1:]}


def labels_text(signature: Mapping[str, Any]) -> str | None:
    """The ``labels.txt`` a classifier's configuration names (one class name a line), None for other models."""
    labels = signature.get("labels")
    if signature.get("task") != "classification" or len(signature["outputs"]) != 1 or not labels:
        return None
    return "\n".join(labels) + "\n"


def model_config(
    name: str,
    signature: Mapping[str, Any],
    *,
    versions: Sequence[int] = (),
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US,
    warmup: Sequence[int] = WARMUP_BATCH_SIZES,
    labels: bool = True,
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Triton's ``ModelConfig`` (JSON form, field names as in the proto) of an ONNX model and its signature.

    ``versions`` pins a ``specific`` version policy (none: Triton's default, the latest); warm-up runs
    zeros at each batch size of ``warmup`` up to ``max_batch_size``; ``labels`` names ``labels.txt`` on
    a classifier's output (see :func:`labels_text`); ``parameters`` become string parameters.
    """
    if max_batch_size < 1 or max_queue_delay_us < 0:
        raise TritonConfigError(
            f"{name}: max_batch_size must be >= 1 and max_queue_delay_us >= 0, got {max_batch_size}, {max_queue_delay_us}"
        )
    inputs = [tensor(s, name) for s in signature["inputs"]]
    outputs = [tensor(s, name) for s in signature["outputs"]]
    if labels and labels_text(signature) is not None:
        outputs[0]["label_filename"] = LABELS_FILE
    config: dict[str, Any] = {
        "name": name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "max_batch_size": max_batch_size,
        "input": inputs,
        "output": outputs,
        "dynamic_batching": {"max_queue_delay_microseconds": max_queue_delay_us},
    }
    if versions:
        config["version_policy"] = {"specific": {"versions": sorted(versions)}}
    sizes = [b for b in warmup if b <= max_batch_size]
    if sizes:
        zeros = {t["name"]: {"data_type": t["data_type"], "dims": t["dims"], "zero_data": True} for t in inputs}
        config["model_warmup"] = [{"name": f"zeros_batch_{b}", "batch_size": b, "inputs": zeros} for b in sizes]
    if parameters:
        config["parameters"] = {key: {"string_value": value} for key, value in parameters.items()}
    return config


def config_message(config: Mapping[str, Any]) -> ModelConfig:
    """The configuration as the generated ``inference.ModelConfig`` message (what v2 gRPC's ``ModelConfig`` answers)."""
    from google.protobuf import json_format

    from contract.protos.inference import model_config_pb2

    return json_format.ParseDict(dict(config), model_config_pb2.ModelConfig())


def config_pbtxt(config: Mapping[str, Any], source: str = "") -> str:
    """``config.pbtxt``: the protobuf text of :func:`config_message`, under a comment saying its batching (and ``source``)."""
    from google.protobuf import text_format

    batching = config.get("dynamic_batching", {})
    header = [f"# {source}"] if source else []
    header.append(
        f"# max_batch_size {config['max_batch_size']}, dynamic_batching max_queue_delay_microseconds "
        f"{batching.get('max_queue_delay_microseconds', 0)} (0: a batch never waits for company; protobuf text leaves zeros out)"
    )
    body = text_format.MessageToString(config_message(config), use_short_repeated_primitives=True)
    return "\n".join(header) + "\n" + body

"""The data plane's one request and one response type, what every protocol front decodes into and encodes from.

A front turns its wire format into an :class:`InferRequest`: a model reference (public or store name,
and a version number, tag or label), the kind of model its route serves (if it serves one kind),
named input :class:`Tensor` s and parameters (outputs wanted, members, bulk). It checks nothing of
the content: the data plane (:mod:`serving.core.dataplane`) resolves the model and applies every
rule. A tensor arrives with its header (datatype, shape) and its values, or a function that decodes
its values, called only once the header has passed the rules, so nothing is allocated for a tensor
that could never be accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from contract.errors import InvalidInput

if TYPE_CHECKING:
    from contract.calibration import Judgement

    from .kinds import ModelKind
    from .runtime import ModelRuntime

# Tensor datatypes by their Open Inference Protocol names (little-endian, as raw contents are);
# every front names the datatype it received in these terms, so every rule and message uses them.
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
_NAME_OF = {dt.newbyteorder("="): name for name, dt in DATATYPES.items()}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol name of a numpy dtype (``float32`` -> ``FP32``); ``BYTES`` for object arrays."""
    if dtype.kind == "O":
        return BYTES
    try:
        return _NAME_OF[dtype.newbyteorder("=")]
    except KeyError:
        raise InvalidInput(f"dtype {dtype} is not a tensor datatype; send a real numeric or bool array") from None


@dataclass
class Tensor:
    """One input as sent: its name (None: the model's only input), datatype, shape, and values.

    ``values`` may be wider than ``datatype`` (JSON numbers, gRPC typed contents): the data plane
    checks that they fit it. A callable decodes them after the header has been accepted.
    """

    name: str | None
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | Callable[[], np.ndarray]

    @classmethod
    def of(cls, array: np.ndarray, name: str | None = None, datatype: str | None = None) -> Tensor:
        """A tensor of a decoded array (``datatype``: what the wire said, when wider than the array)."""
        return cls(name, datatype or datatype_of(array.dtype), tuple(array.shape), array)

    def array(self) -> np.ndarray:
        return self.values() if callable(self.values) else self.values


@dataclass(frozen=True)
class Output:
    """One requested output: its name, and for Triton's classification extension how many top classes."""

    name: str
    classes: int = 0
    binary: bool | None = None  # v2 REST's binary extension: carried for the front, None = the request's default


@dataclass
class InferRequest:
    """What a front asks of the data plane, whatever its protocol."""

    inputs: list[Tensor]
    model: str | None = None  # public (lstm, vae2) or store name (mnist-lstm); None = the kind's default
    version: str | None = None  # version number, store tag or label; None = the stable label if set, else the newest
    kind: type[ModelKind] | None = None  # the kind of model the route serves; None = any (then a name is needed)
    outputs: list[Output] | None = None  # None or empty = every output
    members: bool = False  # an ensemble's answer with each member's
    bulk: bool = False  # a request that already is a batch: the bulk row limit, the direct path
    id: str | None = None
    # with no outputs named: a classifier's verdict (confidence, digit, reason) too. /v1 always asks; v2 and
    # TF Serving answer it when a request names those outputs (their metadata lists the model's own tensors).
    verdict: bool = False


@dataclass
class InferResponse:
    """The answer: the model version that computed it and the requested outputs by name."""

    model: ModelRuntime
    outputs: dict[str, np.ndarray]
    requested: list[Output]
    members: dict[str, np.ndarray] | None = None  # member public name -> its first output
    id: str | None = None
    verdict: Judgement | None = None  # a classifier's confidence and "not a digit" verdict, when computed


def one_of(what: str, *values: Any) -> Any:
    """The one value a request gives for ``what`` in several places (query, body), or None; two that differ are a 400."""
    given = [v for v in values if v is not None and v != ""]
    if not given:
        return None
    if any(str(v) != str(given[0]) for v in given[1:]):
        shown = " and ".join(repr(str(v)[:100]) for v in given)
        raise InvalidInput(f"{what} is given twice with different values ({shown}); send it once")
    return given[0]


def version_text(version: Any) -> str | None:
    """A version as sent (a number such as /v1/models' version_number, a tag or a label) as the registry's text."""
    if version is None or version == "":
        return None
    if isinstance(version, bool) or not isinstance(version, (str, int)):
        raise InvalidInput(f"version must be a version number, store tag or label, got {str(version)[:100]!r}")
    return str(version)

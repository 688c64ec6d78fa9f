"""The protocol fronts: each decodes its wire format into the data plane's request and encodes the answer back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.core.engine import Engine


def grpc_services(engine: Engine) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The gRPC protocols one server carries: (generic handlers, full service names)."""
    from .oip import grpc as oip_grpc
    from .tfserving import predict

    handlers = (predict.PredictionServicer(engine).handlers(), oip_grpc.InferenceServicer(engine).handlers())
    return handlers, (predict.SERVICE, oip_grpc.SERVICE)

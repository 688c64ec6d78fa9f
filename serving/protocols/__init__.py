"""The protocol fronts: each decodes its wire format into the data plane's request and encodes the answer back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.core.dataplane import DataPlane


def grpc_services(plane: DataPlane) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The gRPC protocols one server carries: (generic handlers, full service names)."""
    from .oip import grpc as oip_grpc
    from .tfserving import predict

    handlers = (predict.PredictionServicer(plane).handlers(), oip_grpc.InferenceServicer(plane).handlers())
    return handlers, (predict.SERVICE, oip_grpc.SERVICE)

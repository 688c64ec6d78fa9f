"""Python clients for the digit-classifier / clothing-VAE inference service, over HTTP or gRPC.

    from clients import connect
    with connect("http://127.0.0.1:3000") as client:        # or connect(grpc="127.0.0.1:8500")
        print(client.classify(images)[0].label)

``python -m clients --help`` (or ``digits-client``) is the command-line front.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .base import Classification, Client, Encoding, Interpolation, Prediction, Reconstruction
from .errors import (
    ClientError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    NotOfferedError,
    ServerError,
    UnavailableError,
)
from .http import DEFAULT_URL, HTTPClient
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .grpc import GRPCClient

__all__ = [
    "Client",
    "Prediction",
    "Classification",
    "Encoding",
    "Reconstruction",
    "Interpolation",
    "HTTPClient",
    "GRPCClient",
    "RetryPolicy",
    "ClientError",
    "InvalidRequestError",
    "NotFoundError",
    "UnavailableError",
    "DeadlineExceededError",
    "ServerError",
    "NotOfferedError",
    "connect",
]

URL_ENV = "SERVING_URL"


def __getattr__(name: str) -> Any:
    # grpcio is only loaded by code that asks for the gRPC client.
    if name == "GRPCClient":
        from .grpc import GRPCClient

        return GRPCClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(url: str | None = None, grpc: str | None = None, **options: Any) -> Client:
    """A gRPC client when ``grpc`` ("host:port") is given, else an HTTP client for ``url``.

    ``url`` defaults to ``$SERVING_URL`` or http://127.0.0.1:3000. ``options`` go to the
    client (``timeout``, ``retries``, ...).
    """
    if grpc is not None:
        from .grpc import GRPCClient

        return GRPCClient(grpc, **options)
    return HTTPClient(url or os.environ.get(URL_ENV) or DEFAULT_URL, **options)

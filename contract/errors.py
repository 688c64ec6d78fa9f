"""One error hierarchy and one table mapping each class to its HTTP status and gRPC code.

Raise these from anywhere in ``serving/``; the fronts turn them into responses with
:func:`http_status`, :func:`grpc_code` and :func:`error_body`, so HTTP and gRPC can
never disagree about what an error means.
"""

from __future__ import annotations

from typing import Any

INTERNAL_MESSAGE = "internal error; see the server log"


class ServingError(Exception):
    """Base of every error the server raises on purpose; a server fault (5xx) unless a subclass says otherwise."""


class InvalidInput(ServingError):
    """The request is well-formed but its content is not acceptable (shape, dtype, range, field)."""


class InvalidImage(InvalidInput):
    """An uploaded file is not a decodable image, or holds no digit."""


class NotFound(ServingError):
    """Something the request names does not exist."""


class ModelNotFound(NotFound):
    """No loaded model has the requested name."""


class VersionNotFound(NotFound):
    """The model exists but not in the requested version."""


class Forbidden(ServingError):
    """The call is understood but switched off on this server (e.g. the model control API)."""


class PayloadTooLarge(ServingError):
    """Body, pixel count or item count over a configured limit."""


class HeadersTooLarge(PayloadTooLarge):
    """The request's headers (request line included) are over SERVING_MAX_HEADER_BYTES."""


class MethodNotAllowed(ServingError):
    """The path exists but not with this HTTP method."""


class UnsupportedMediaType(ServingError):
    """The body's content type is not one this route accepts."""


class Unimplemented(ServingError):
    """The method or feature exists in the protocol but this server does not offer it."""


class NotReady(ServingError):
    """The server or the model is still starting (or draining); retry later."""


class Overloaded(ServingError):
    """A model's request queue is full (SERVING_MAX_QUEUE): refused at once instead of queueing; retry shortly."""


class ModelIntegrityError(ServingError):
    """A stored model file does not match the sha256 recorded when it was registered."""


# class -> (HTTP status, grpc.StatusCode member name). Lookups walk the MRO, so a
# subclass without its own row inherits its parent's.
ERROR_TABLE: dict[type[ServingError], tuple[int, str]] = {
    ServingError: (500, "INTERNAL"),
    InvalidInput: (400, "INVALID_ARGUMENT"),
    InvalidImage: (400, "INVALID_ARGUMENT"),
    NotFound: (404, "NOT_FOUND"),
    ModelNotFound: (404, "NOT_FOUND"),
    VersionNotFound: (404, "NOT_FOUND"),
    Forbidden: (403, "PERMISSION_DENIED"),
    PayloadTooLarge: (413, "RESOURCE_EXHAUSTED"),
    HeadersTooLarge: (431, "RESOURCE_EXHAUSTED"),
    MethodNotAllowed: (405, "INVALID_ARGUMENT"),  # HTTP only, like 415
    UnsupportedMediaType: (415, "INVALID_ARGUMENT"),
    Unimplemented: (501, "UNIMPLEMENTED"),
    NotReady: (503, "UNAVAILABLE"),
    Overloaded: (503, "UNAVAILABLE"),
}

_INTERNAL = (500, "INTERNAL")


def _lookup(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, ServingError):
        for cls in type(exc).__mro__:
            row = ERROR_TABLE.get(cls)
            if row is not None:
                return row
    return _INTERNAL


def http_status(exc: BaseException) -> int:
    """HTTP status for any exception; 500 for anything that is not a :class:`ServingError`."""
    return _lookup(exc)[0]


def grpc_code(exc: BaseException) -> Any:
    """``grpc.StatusCode`` for any exception; ``INTERNAL`` for anything that is not a :class:`ServingError`."""
    import grpc  # the HTTP front does not need grpc loaded

    return getattr(grpc.StatusCode, _lookup(exc)[1])


# 5xx classes whose messages are deliberate (what is unavailable or unimplemented), never a leaked cause.
_PUBLIC_SERVER_ERRORS = (Unimplemented, NotReady, Overloaded)


def message_is_public(exc: BaseException) -> bool:
    """True when the exception's own message may be shown to the caller: every 4xx, and deliberate 5xx."""
    return 400 <= http_status(exc) < 500 or isinstance(exc, _PUBLIC_SERVER_ERRORS)


def error_message(exc: BaseException) -> str:
    """The message safe to send to the client: the exception's own text when public, a generic one otherwise."""
    if message_is_public(exc):
        return str(exc) or type(exc).__doc__ or type(exc).__name__
    return INTERNAL_MESSAGE


def error_body(exc: BaseException) -> dict[str, str]:
    """JSON body for an error response: ``{"error": message, "type": ClassName}``; internal faults never leak details."""
    if message_is_public(exc):
        return {"error": error_message(exc), "type": type(exc).__name__}
    return {"error": INTERNAL_MESSAGE, "type": "InternalError"}

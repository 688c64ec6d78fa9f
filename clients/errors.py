"""Client-side errors and the one table that maps HTTP statuses and gRPC codes onto them."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error a client raises.

    ``status`` is the HTTP status (or None), ``code`` the gRPC status code name such as
    ``"INVALID_ARGUMENT"`` (or None), ``message`` the server's (or the client's) explanation
    and ``type`` the server's error class name when it sent one.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = error_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"


class InvalidRequestError(ClientError):
    """The request was rejected as malformed or too large (HTTP 400/413/415/422/431, INVALID_ARGUMENT, RESOURCE_EXHAUSTED)."""


class NotFoundError(ClientError):
    """The named model (or route) does not exist (HTTP 404, NOT_FOUND)."""


class UnavailableError(ClientError):
    """The server could not be reached or is not ready (HTTP 503, UNAVAILABLE), even after retries."""

    retryable = True


class DeadlineExceededError(UnavailableError):
    """No answer within the timeout (client timeout, HTTP 504, DEADLINE_EXCEEDED); not retried."""

    # Retrying would multiply the caller's time budget by the retry count.
    retryable = False


class ServerError(ClientError):
    """Any other failure: a server fault (5xx) or an unexpected status."""


class NotOfferedError(ClientError):
    """What this transport or server does not offer (HTTP 501, UNIMPLEMENTED): e.g. the plots over gRPC,
    which only the HTTP API serves. The message says what to use instead."""


def not_offered_over_grpc(what: str, why: str = "") -> NotOfferedError:
    """The gRPC client's error for an HTTP-only route: ``"<what> is not offered over gRPC (<why>); use HTTP ..."``."""
    reason = f" ({why})" if why else ""
    return NotOfferedError(
        f"{what} is not offered over gRPC{reason}; use HTTP (connect(url=...), or digits-client --url)", code="UNIMPLEMENTED"
    )


# class -> (HTTP statuses, gRPC code names). Anything not listed is a ServerError.
ERROR_TABLE: dict[type[ClientError], tuple[frozenset[int], frozenset[str]]] = {
    InvalidRequestError: (frozenset({400, 413, 415, 422, 431}), frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"})),
    NotFoundError: (frozenset({404}), frozenset({"NOT_FOUND"})),
    UnavailableError: (frozenset({503}), frozenset({"UNAVAILABLE"})),
    DeadlineExceededError: (frozenset({504}), frozenset({"DEADLINE_EXCEEDED"})),
    NotOfferedError: (frozenset({501}), frozenset({"UNIMPLEMENTED"})),
}


def class_for_http_status(status: int) -> type[ClientError]:
    """The exception class for a non-2xx HTTP status."""
    for cls, (statuses, _codes) in ERROR_TABLE.items():
        if status in statuses:
            return cls
    return ServerError


def class_for_grpc_code(code: str) -> type[ClientError]:
    """The exception class for a gRPC status code name (``grpc.StatusCode.X.name``)."""
    for cls, (_statuses, codes) in ERROR_TABLE.items():
        if code in codes:
            return cls
    return ServerError


def _detail_summary(detail: Any) -> str:
    # BentoML's request-schema errors put pydantic's list of problems in "detail".
    if not isinstance(detail, list):
        return ""
    parts = []
    for item in detail[:3]:
        if isinstance(item, dict) and "msg" in item:
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
    return "; ".join(parts)


def error_from_http(status: int, body: Any, reason: str = "") -> ClientError:
    """Build the exception for an HTTP error answer; ``body`` is the decoded JSON (or raw text)."""
    message = ""
    error_type = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            message = body["error"]
        if isinstance(body.get("type"), str):
            error_type = body["type"]
        summary = _detail_summary(body.get("detail"))
        if summary:
            message = f"{message}: {summary}" if message else summary
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    if not message:
        message = f"HTTP {status} {reason}".strip()
    return class_for_http_status(status)(message, status=status, error_type=error_type)


def error_from_grpc(code: str, details: str | None) -> ClientError:
    """Build the exception for a failed RPC from its status code name and details."""
    message = details or f"gRPC status {code}"
    return class_for_grpc_code(code)(message, code=code)

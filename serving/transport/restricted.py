"""Restricted APIs, the Triton way (``--http-restricted-api`` / ``--grpc-restricted-protocol``): an admin
group of endpoints answers only requests that carry a configured key, as an HTTP header or gRPC metadata.

``SERVING_RESTRICTED_API`` lists ``GROUPS:KEY=VALUE`` entries separated by ``;``, for HTTP and gRPC at
once, e.g. ``model-repository,shared-memory:admin-key=s3cret;statistics:stats-key=other``. Groups:
``model-repository`` (``/v2/repository/...``, label changes, gRPC ``Repository*``), ``shared-memory``
(``/v2/*sharedmemory/...``, gRPC ``*SharedMemory*``), ``statistics`` (``.../stats``, gRPC
``ModelStatistics``), ``trace`` (``/v2[/models/{name}]/trace/setting``, gRPC ``TraceSetting``) and
``logging`` (``/v2/logging``, gRPC ``LogSettings``): Triton's restricted categories. Inference, health
and metadata stay open. Empty (the default): nothing is restricted.
A request without the key, or with another value, is a 403 / PERMISSION_DENIED that names the header.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from contract.errors import Forbidden

from .middleware import Scope, send_error

GROUPS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Restricted:
    """Which group needs which (header, value)."""

    keys: dict[str, tuple[str, str]]

    @classmethod
    def parse(cls, raw: str) -> Restricted:
        keys: dict[str, tuple[str, str]] = {}
        for entry in (e.strip() for e in raw.split(";")):
            if not entry:
                continue
            groups, sep, pair = entry.partition(":")
            header, eq, value = pair.partition("=")
            header = header.strip().lower()
            if not sep or not eq or not header or not value or not set(header) <= _KEY_CHARS:
                raise ValueError(f"each entry is GROUPS:KEY=VALUE (e.g. model-repository,statistics:admin-key=secret), got {entry[:80]!r}")
            for group in (g.strip() for g in groups.split(",")):
                if group not in GROUPS:
                    raise ValueError(f"unknown restricted API group {group!r}; groups: {', '.join(GROUPS)}")
                if group in keys:
                    raise ValueError(f"group {group!r} is restricted twice")
                keys[group] = (header, value)
        return cls(keys)

    def check(self, group: str | None, sent: Callable[[str], str | None]) -> None:
        """Refuse (403) a request to a restricted ``group`` whose ``sent(header)`` is not the key's value."""
        if group is None or group not in self.keys:
            return
        header, value = self.keys[group]
        given = sent(header)
        if given is None or not hmac.compare_digest(given.encode(), value.encode()):
            raise Forbidden(f"this API ({group}) is restricted: send the header {header!r} with its configured value")


def http_group(method: str, path: str) -> str | None:
    """The admin group of an HTTP request, or None (open)."""
    if path.startswith("/v2/repository/"):
        return "model-repository"
    if path.startswith("/v1/models/") and "/labels/" in path and method in ("PUT", "DELETE"):
        return "model-repository"
    if path.startswith(("/v2/systemsharedmemory", "/v2/cudasharedmemory")):
        return "shared-memory"
    if path.startswith("/v2/models/") and path.rstrip("/").endswith("/stats"):
        return "statistics"
    if path.startswith("/v2/") and path.rstrip("/").endswith("/trace/setting"):
        return "trace"
    if path.rstrip("/") == "/v2/logging":
        return "logging"
    return None


def grpc_group(method: str) -> str | None:
    """The admin group of a GRPCInferenceService method, or None (open)."""
    if method.startswith("Repository"):
        return "model-repository"
    if "SharedMemory" in method:
        return "shared-memory"
    if method == "ModelStatistics":
        return "statistics"
    if method == "TraceSetting":
        return "trace"
    if method == "LogSettings":
        return "logging"
    return None


class RestrictedApis:
    """HTTP middleware: :meth:`Restricted.check` on every request, before anything reads its body."""

    def __init__(self, app: Any, restricted: Restricted) -> None:
        self.app = app
        self.restricted = restricted

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.restricted.keys:
            group = http_group(scope.get("method", ""), scope.get("path", ""))
            if group is not None:
                headers = scope.get("headers") or ()

                def sent(name: str) -> str | None:
                    wanted = name.encode()
                    return next((v.decode("latin-1") for k, v in headers if k.lower() == wanted), None)

                try:
                    self.restricted.check(group, sent)
                except Forbidden as e:
                    return await send_error(scope, send, e)
        await self.app(scope, receive, send)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def guard_grpc(restricted: Restricted, method: str, fn: Handler) -> Handler:
    """``fn`` behind :meth:`Restricted.check` on the call's metadata (``fn`` itself when the method is open)."""
    group = grpc_group(method)
    if group is None or group not in restricted.keys:
        return fn

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict((k.lower(), v) for k, v in context.invocation_metadata() or ())
        restricted.check(group, lambda name: metadata.get(name) if isinstance(metadata.get(name), str) else None)
        return await fn(request, context)

    return guarded

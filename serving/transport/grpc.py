"""The worker's gRPC transport: one ``grpc.aio`` server on the worker's own event loop, and the handler guard.

The server carries whatever protocol services it is given (TF Serving's PredictionService and v2's
GRPCInferenceService, see :mod:`serving.service`) plus grpc.health.v1 and reflection, on one port.
Every worker binds the same port; gRPC sets ``SO_REUSEPORT`` on Linux, so the kernel spreads
connections over the workers. :func:`guarded_handler` parses each request itself (undecodable
bytes are INVALID_ARGUMENT) and turns every error into its status code and public message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from contract.errors import InvalidInput, ServingError, Unimplemented, error_message, grpc_code
from serving.settings import Settings

logger = logging.getLogger("serving.grpc")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def guarded_handler(fn: Handler, request_cls: Any) -> grpc.RpcMethodHandler:
    """A unary handler that parses the request itself (undecodable bytes are INVALID_ARGUMENT) and maps errors to codes."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            try:
                request = request_cls.FromString(raw)
            except DecodeError as e:
                raise InvalidInput(f"the request is not a valid {request_cls.DESCRIPTOR.full_name} message") from e
            return await fn(request, context)
        except ServingError as e:
            await abort(context, e)
        except Exception as e:  # a fault of ours: generic message out, traceback to the log
            logger.exception("gRPC %s failed", request_cls.DESCRIPTOR.name)
            await abort(context, e)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=_serialize)


def guarded_stream_handler(
    fn: Callable[[Any], Awaitable[Any]], request_cls: Any, failed: Callable[[Any, str], Any], max_in_flight: int
) -> grpc.RpcMethodHandler:
    """A bidirectional handler: each request of the stream is answered by ``fn`` as soon as it is done,
    up to ``max_in_flight`` at once (so the batcher merges them with every other call), in the order
    they finish. A bad request is answered by ``failed(request or None, message)`` and the stream goes
    on; the stream ends when the client has closed its side and every answer is sent."""

    async def one(raw: bytes) -> Any:
        request = None
        try:
            try:
                request = request_cls.FromString(raw)
            except DecodeError as e:
                raise InvalidInput(f"the request is not a valid {request_cls.DESCRIPTOR.full_name} message") from e
            return await fn(request)
        except ServingError as e:
            return failed(request, error_message(e))
        except Exception as e:
            logger.exception("gRPC stream %s failed", request_cls.DESCRIPTOR.name)
            return failed(request, error_message(e))

    async def handle(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        answers: asyncio.Queue[Any] = asyncio.Queue()
        slots = asyncio.Semaphore(max_in_flight)
        pending: set[asyncio.Task[None]] = set()
        end = object()

        async def answer(raw: bytes) -> None:
            try:
                await answers.put(await one(raw))
            finally:
                slots.release()

        async def read() -> None:
            async for raw in requests:
                await slots.acquire()
                task = asyncio.ensure_future(answer(raw))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            await answers.put(end)

        reader = asyncio.ensure_future(read())
        try:
            while (message := await answers.get()) is not end:
                yield message.SerializeToString()
            await reader  # re-raises what ended the client's side, if anything did
        finally:  # the client went away: drop what it will never read
            for task in (reader, *pending):
                task.cancel()

    return grpc.stream_stream_rpc_method_handler(handle)


def unimplemented_handler(error: Unimplemented) -> grpc.RpcMethodHandler:
    """A unary handler that answers UNIMPLEMENTED with ``error``'s message."""

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    return grpc.unary_unary_rpc_method_handler(handle)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    await context.abort(grpc_code(exc), error_message(exc))


def _health_servicer(health: Any, services: Sequence[str]) -> Any:
    """grpc.health.v1 whose NOT_FOUND for an unknown service says which services it knows (the stock
    servicer answers it with an empty message)."""
    known = ("", *services)

    class Health(health.aio.HealthServicer):  # type: ignore[misc]  # grpcio-health-checking is untyped
        async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request.service not in known:
                names = ", ".join(repr(name) for name in known)
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"unknown service {request.service[:200]!r}; health is kept for {names} ('' is the whole server)",
                )
            return await super().Check(request, context)

    return Health()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from SERVING_TLS_CERT / SERVING_TLS_KEY (client certificates required with SERVING_TLS_CLIENT_CA), or None."""
    if not settings.tls_cert or not settings.tls_key:
        return None

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    ca = read(settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(read(settings.tls_key), read(settings.tls_cert))], root_certificates=ca, require_client_auth=ca is not None
    )


# SERVING_GRPC_RESPONSE_COMPRESSION -> what grpc compresses every answer with (requests: whatever the client sent).
COMPRESSIONS = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}


class GrpcServer:
    """The worker's grpc.aio server: the given services + health + reflection on one port."""

    def __init__(self, settings: Settings, handlers: Sequence[grpc.GenericRpcHandler], services: Sequence[str]) -> None:
        self.settings = settings
        self.handlers = tuple(handlers)
        self.services = tuple(services)  # full names, for health and reflection
        self.server: grpc.aio.Server | None = None
        self.health: Any = None

    async def start(self, serving: bool) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        limit = self.settings.grpc_max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1),  # every worker binds the port; the kernel spreads connections
            ],
            compression=COMPRESSIONS[self.settings.grpc_response_compression],
        )
        server.add_generic_rpc_handlers(self.handlers)
        self.health = _health_servicer(health, self.services)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        credentials = server_credentials(self.settings)
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if bound == 0:
            raise RuntimeError(f"cannot bind gRPC to {address}")
        await server.start()
        self.server = server
        await self.set_serving(serving)
        logger.info("gRPC %s on %s", ", ".join(self.services), address)

    async def set_serving(self, serving: bool) -> None:
        from grpc_health.v1 import health_pb2

        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.services):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING, stop accepting calls, finish those in flight (at most ``grace`` seconds)."""
        if self.server is None:
            return
        server, self.server = self.server, None
        await self.set_serving(False)
        await server.stop(grace)
        logger.info("gRPC stopped")

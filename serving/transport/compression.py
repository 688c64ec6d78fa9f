"""HTTP compression, as tritonclient's ``request_compression_algorithm`` / ``response_compression_algorithm``
send it: request bodies in ``Content-Encoding: gzip`` or ``deflate``, answers in whichever of the two
``Accept-Encoding`` prefers.

A compressed body is inflated as it arrives and never past ``max_body_bytes`` (the limit a plain body
has): a gzip bomb is a 413 after at most that many bytes, not an allocation of what it claims. A body
that is not what its encoding says is a 400; an encoding other than these (``br``, ``zstd``) is a 415
(RFC 7694). Answers of at least ``min_bytes`` are compressed, unless already encoded.
"""

from __future__ import annotations

import zlib
from typing import Any

from contract.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

from .middleware import Scope, send_error

# zlib's wbits: 16 + 15 reads the gzip format, 15 zlib's (HTTP's "deflate"); -15 raw deflate, which some clients send.
READ_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}
WRITE_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}
# zlib's fastest level: answers are mostly float arrays, where higher levels gain little and cost latency.
LEVEL = 1


def accepted_encoding(accept: bytes) -> bytes | None:
    """The encoding an ``Accept-Encoding`` value asks for that we write (the highest q; gzip on ties), or None."""
    best: tuple[float, int, bytes] | None = None
    for part in accept.lower().split(b","):
        token, _, params = part.strip().partition(b";")
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        name = token.strip()
        if name in WRITE_WBITS and q > 0:
            candidate = (q, name == b"gzip", name)
            best = candidate if best is None or candidate > best else best
    return best[2] if best else None


class Inflater:
    """A body in ``encoding``, inflated chunk by chunk to at most ``limit`` bytes."""

    def __init__(self, encoding: bytes, limit: int) -> None:
        self.encoding = encoding.decode()
        self.limit = limit
        self.out = bytearray()
        self._wbits = READ_WBITS[encoding]
        self._zlib: Any = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._zlib is None:
            wbits = self._wbits
            if wbits == zlib.MAX_WBITS and not _zlib_header(data):  # "deflate" without zlib's header: raw deflate
                wbits = -zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(wbits)
        try:
            self.out += self._zlib.decompress(data, self.limit + 1 - len(self.out))
        except zlib.error:
            raise InvalidInput(f"the body is not valid {self.encoding} data (Content-Encoding: {self.encoding})") from None
        if len(self.out) > self.limit:
            raise PayloadTooLarge(
                f"the {self.encoding} body inflates to more than {self.limit} bytes (SERVING_MAX_BODY_BYTES); send fewer rows per request"
            )

    def finish(self) -> bytes:
        if self._zlib is None or not self._zlib.eof:
            raise InvalidInput(f"the {self.encoding} body is empty or truncated (Content-Encoding: {self.encoding})")
        return bytes(self.out)


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


class Compression:
    """Inflate ``gzip`` / ``deflate`` request bodies (bounded) and compress answers the client accepts so."""

    def __init__(self, app: Any, max_body_bytes: int, min_bytes: int = 1024) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        encoding = b""
        accept = b""
        for key, value in headers:
            if key == b"content-encoding":
                encoding = value.strip().lower()
            elif key == b"accept-encoding":
                accept = value
        if encoding not in (b"", b"identity"):
            if encoding not in READ_WBITS:
                shown = encoding.decode("latin-1")[:50]
                return await send_error(
                    scope,
                    send,
                    UnsupportedMediaType(f"Content-Encoding {shown!r} is not accepted; send gzip, deflate or identity"),
                    close=True,
                )
            try:
                body = await self._inflate(encoding, receive)
            except (InvalidInput, PayloadTooLarge) as e:
                return await send_error(scope, send, e, close=True)
            kept = [(k, v) for k, v in headers if k not in (b"content-encoding", b"content-length", b"transfer-encoding")]
            scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
            receive = _replay(body, receive)
        wanted = accepted_encoding(accept) if accept and scope.get("method") != "HEAD" else None
        await self.app(scope, receive, self._compressing(send, wanted) if wanted else send)

    async def _inflate(self, encoding: bytes, receive: Any) -> bytes:
        inflater = Inflater(encoding, self.max_bytes)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise InvalidInput("the client went away while sending its body")
            inflater.feed(message.get("body", b""))
            if not message.get("more_body", False):
                return inflater.finish()

    def _compressing(self, send: Any, encoding: bytes) -> Any:
        start: dict[str, Any] | None = None
        parts: list[bytes] = []

        async def sending(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if any(k.lower() == b"content-encoding" for k, _ in message.get("headers") or ()):
                    start = None
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(parts)
            headers = [(k, v) for k, v in start.get("headers") or () if k.lower() != b"content-length"]
            if len(body) >= self.min_bytes:
                packer = zlib.compressobj(LEVEL, zlib.DEFLATED, WRITE_WBITS[encoding])
                body = packer.compress(body) + packer.flush()
                headers += [(b"content-encoding", encoding), (b"vary", b"Accept-Encoding")]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return sending


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the inflated body once, then what the client sends next (a disconnect)."""
    given = False

    async def replay() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay

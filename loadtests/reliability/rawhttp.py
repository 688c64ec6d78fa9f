"""One raw HTTP/1.1 request on its own connection, and its whole answer: the hostile inputs' client.

A request is bytes, or a function that writes it (a chunked body written piece by piece); it is
written while the answer is read, since a server that refuses a large body answers before reading it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int  # 0: no answer
    headers: dict[str, str]
    body: bytes
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def exchange(port: int, request: bytes | Callable[[socket.socket], None], timeout: float = 30.0) -> Answer:
    """Send one raw request (bytes, or a function that writes it) and read one response."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return Answer(0, {}, b"", f"connect: {e}")

    def write() -> None:
        try:
            if callable(request):
                request(sock)
            else:
                sock.sendall(request)
        except OSError:
            pass  # the server may answer (413, 431) and close before the whole request is written

    # Write while reading: a server that refuses a large body answers before reading it all.
    writer = threading.Thread(target=write, daemon=True)
    with sock:
        writer.start()
        try:
            return _read_answer(sock)
        finally:
            writer.join(timeout)


def _read_answer(sock: socket.socket) -> Answer:
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer(0, {}, b"", f"closed without an answer after {len(buf)} bytes")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            body = _dechunk(body)
        else:
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        return Answer(status, headers, body)
    except (OSError, ValueError, IndexError) as e:
        return Answer(0, {}, b"", f"{type(e).__name__}: {e}")


def _dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def http_request(
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    chunked: bool = False,
) -> bytes | Callable[[socket.socket], None]:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    head += [f"{k}: {v}" for k, v in headers]
    if not chunked:
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    head.append("Transfer-Encoding: chunked")
    start = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    def write(sock: socket.socket) -> None:
        sock.sendall(start)
        step = 1 << 20
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")

    return write

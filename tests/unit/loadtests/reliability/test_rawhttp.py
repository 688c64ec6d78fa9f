from __future__ import annotations

import socket
import threading

from loadtests.reliability import rawhttp


def test_dechunk():
    assert rawhttp._dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == b"abcde"


def test_exchange_reads_an_answer_while_still_writing():
    # A server that answers after the headers and closes: the client gets the answer, not a reset.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        body = b'{"error": "too big", "type": "PayloadTooLarge"}'
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    request = rawhttp.http_request("POST", "/v1/classify", b"x" * (8 << 20), chunked=True)
    got = rawhttp.exchange(server.getsockname()[1], request, timeout=10)
    thread.join()
    server.close()
    assert got.status == 413 and got.json()["type"] == "PayloadTooLarge"

from __future__ import annotations

import asyncio

import pytest

from loadtests.drivers import http


def test_build_request_is_keep_alive_http11_with_length():
    raw = http.build_request("POST", "127.0.0.1:3000", "/v1/classify", b'{"images":[]}')
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/classify HTTP/1.1"
    assert "Host: 127.0.0.1:3000" in lines and "Connection: keep-alive" in lines
    assert "Content-Length: 13" in lines and body == b'{"images":[]}'
    get = http.build_request("GET", "h:1", "/v1/models")
    assert b"Content-Length" not in get and get.endswith(b"\r\n\r\n")


def read(data: bytes) -> tuple[int, int, bool]:
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await http.read_response(reader)

    return asyncio.run(go())


def test_read_response_content_length_and_close():
    assert read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello") == (200, 5, False)
    assert read(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}") == (500, 2, True)


def test_read_response_chunked():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
    assert read(data) == (200, 8, False)


async def tiny_server(status_of: object = lambda n: 200):
    """An HTTP/1.1 keep-alive server answering every request with ``status_of(request number)``."""
    served = 0

    async def handle(reader, writer):
        nonlocal served
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                served += 1
                status = status_of(served)
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def closed_port() -> int:
    """A loopback port that just stopped listening: every connection to it is refused."""
    server = await tiny_server()
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


def test_closed_loop_against_a_tiny_server():
    async def go():
        server = await tiny_server()
        port = server.sockets[0].getsockname()[1]
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        async with server:
            return await http.closed_loop(f"http://127.0.0.1:{port}", [request], concurrency=3, warmup_s=0.1, duration_s=0.4)

    result = asyncio.run(go())
    assert result.concurrency == 3 and result.requests > 10 and result.errors == 0 and result.error_codes == {}
    assert result.rps == pytest.approx(result.requests / 0.4)
    assert result.p50_ms is not None and result.p50_ms <= result.p99_ms
    assert result.client_cpu_s >= 0


def test_closed_loop_counts_error_statuses_by_code():
    async def go():
        server = await tiny_server(lambda n: 503 if n % 2 else 200)
        port = server.sockets[0].getsockname()[1]
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        async with server:
            return await http.closed_loop(f"http://127.0.0.1:{port}", [request], concurrency=1, warmup_s=0.0, duration_s=0.3)

    result = asyncio.run(go())
    assert result.errors > 0 and result.error_codes == {"HTTP 503": result.errors}
    assert abs(result.errors - result.requests) <= 1 and result.first_error == "HTTP 503"


def test_closed_loop_without_a_server_backs_off():
    async def go():
        port = await closed_port()
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        return await http.closed_loop(f"http://127.0.0.1:{port}", [request], concurrency=2, warmup_s=0.0, duration_s=0.3)

    result = asyncio.run(go())
    assert result.requests == 0 and 0 < result.errors <= 2 * (0.3 / 0.05 + 1)  # one try per back-off, not a spin
    assert result.first_error and "Connect" in result.first_error


def test_closed_loop_outcomes_keeps_every_request_until_stopped():
    async def go():
        server = await tiny_server(lambda n: 503 if n == 3 else 200)
        port = server.sockets[0].getsockname()[1]
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        stop = asyncio.Event()
        async with server:
            load = asyncio.ensure_future(http.closed_loop_outcomes(port, [request], 2, 30.0, stop))
            await asyncio.sleep(0.3)
            stop.set()
            return await asyncio.wait_for(load, 5)

    outcomes = asyncio.run(go())
    assert len(outcomes) > 10 and [o.status for o in outcomes].count(503) == 1
    assert all(o.status in (200, 503) and o.seconds >= 0 for o in outcomes)


def test_paced_keeps_every_request_and_says_it_kept_pace():
    async def go():
        server = await tiny_server(lambda n: 503 if n == 5 else 200)
        port = server.sockets[0].getsockname()[1]
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        async with server:
            return await http.paced(port, [request], rate=200, seconds=0.5, max_connections=8)

    import gc

    frozen = gc.get_freeze_count()
    outcomes, client = asyncio.run(go())
    assert len(outcomes) == 100 and client.sends == 100
    assert [o.status for o in outcomes].count(503) == 1 and all(o.status in (200, 503) for o in outcomes)
    assert all(o.seconds >= 0 and o.kind == "" for o in outcomes)
    starts = [o.started for o in outcomes]
    assert 0.4 <= max(starts) - min(starts) <= 0.6  # one send every 5 ms over the half second, not a burst
    assert client.late_max_ms >= client.late_p99_ms >= 0 and client.cpu_cores >= 0
    assert gc.get_freeze_count() == frozen  # what it froze for the run is handed back to the collector


def test_paced_without_a_server_records_refusals():
    async def go():
        port = await closed_port()
        request = http.build_request("GET", f"127.0.0.1:{port}", "/")
        return await http.paced(port, [request], rate=100, seconds=0.2, max_connections=4)

    outcomes, client = asyncio.run(go())
    assert len(outcomes) == 20 and {(o.status, o.kind) for o in outcomes} == {(0, "refused")}


def test_paced_client_verdict():
    ok = http.PacedClient(sends=10, late_p99_ms=2.0, late_max_ms=5.0, gc_pauses=3, gc_max_ms=4.0, cpu_cores=0.1)
    assert ok.kept_pace()
    assert not http.PacedClient(10, 30.0, 40.0, 0, 0.0, 0.1).kept_pace()  # sends went out late
    assert not http.PacedClient(10, 1.0, 1.0, 1, 81.0, 0.1).kept_pace()  # one long collection of its own

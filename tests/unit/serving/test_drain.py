"""serving.drain on real loopback sockets: find a listener by port, stop new handshakes, see the accept queue."""

from __future__ import annotations

import socket
import sys

import pytest

from serving.transport import drain

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket filters and tcp_info")


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def test_finds_the_listener_by_port(listener):
    port = listener.getsockname()[1]
    found = drain.listening_sockets(port)
    try:
        assert len(found) == 1 and found[0].getsockname() == listener.getsockname()
    finally:
        for s in found:
            s.close()
    assert drain.listening_sockets(1) == []


def test_accept_queue_length_counts_unaccepted_connections(listener):
    assert drain.accept_queue_length(listener) == 0
    clients = [socket.create_connection(listener.getsockname(), timeout=2) for _ in range(3)]
    try:
        assert drain.accept_queue_length(listener) == 3
        listener.accept()[0].close()
        assert drain.accept_queue_length(listener) == 2
    finally:
        for c in clients:
            c.close()


def test_refusing_new_connections_keeps_the_queued_ones(listener):
    queued = socket.create_connection(listener.getsockname(), timeout=2)
    found = drain.listening_sockets(listener.getsockname()[1])
    assert drain.refuse_new_connections(found[0])  # through a duplicate: the filter is on the shared socket
    for s in found:
        s.close()
    with pytest.raises(OSError):  # the SYN is dropped: no handshake completes
        socket.create_connection(listener.getsockname(), timeout=0.5)
    assert drain.accept_queue_length(listener) == 1
    conn, _ = listener.accept()
    queued.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    conn.close()
    queued.close()

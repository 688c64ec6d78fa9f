"""Stop accepting without resetting what the kernel already accepted (Linux; elsewhere a no-op).

A listening socket that closes resets every connection still waiting in its accept queue: those
clients had a completed handshake and a request on the wire, and get no answer. So a worker
leaving first makes the listener refuse *new* handshakes (a one-instruction socket filter that drops
incoming SYNs: clients retry the SYN and are refused once the socket is gone), then keeps accepting
until the queue is empty, and only then lets uvicorn close. The workers share the HTTP listener
(BentoML passes them one socket), so the first filter to attach stops it for all of them.

The listener is found by port among this process's file descriptors: BentoML offers no public
handle on the socket uvicorn serves.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
import sys

logger = logging.getLogger("serving.drain")

SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06  # BPF_RET | BPF_K: "return K bytes of the packet"; K = 0 drops it
_TCPI_UNACKED = 24  # offset of tcpi_unacked in struct tcp_info: the accept queue's length on a listener


def listening_sockets(port: int) -> list[socket.socket]:
    """Duplicates of this process's TCP listening sockets bound to ``port`` (the caller closes them)."""
    if not sys.platform.startswith("linux"):
        return []
    found, seen = [], set()
    links = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            links[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    for fd, link in links.items():
        if not link.startswith("socket:") or link in seen:
            continue
        seen.add(link)  # one socket may sit behind several descriptors
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            listening = (
                sock.type == socket.SOCK_STREAM
                and sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                and sock.getsockname()[1] == port
            )
        except OSError:
            listening = False
        if listening:
            found.append(sock)
        else:
            sock.close()
    return found


def refuse_new_connections(sock: socket.socket) -> bool:
    """Drop every SYN that reaches ``sock`` from now on (connections already queued stay queued)."""
    # one struct sock_filter {u16 code; u8 jt, jf; u32 k}: "return 0", i.e. drop the packet
    instructions = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, 0))
    fprog = struct.pack("HL", 1, ctypes.addressof(instructions))  # struct sock_fprog {u16 len; struct sock_filter *filter}
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as e:
        logger.warning("cannot filter new connections on the listener (%s); the accept queue may be reset", e)
        return False
    return True


def accept_queue_length(sock: socket.socket) -> int:
    """Connections waiting in the listener's accept queue (tcp_info's tcpi_unacked on a listener)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, _TCPI_UNACKED)[0])

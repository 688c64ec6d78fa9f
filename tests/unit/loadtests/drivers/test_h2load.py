from __future__ import annotations

import struct

import pytest

from loadtests.drivers import h2load

SUMMARY = """finished in 8.00s, 3112.50 req/s, 536.45KB/s
requests: 24900 total, 24932 started, 24900 done, 24890 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 24890 2xx, 0 3xx, 0 4xx, 10 5xx
"""


def test_grpc_frame_is_flag_length_message():
    framed = h2load.grpc_frame(b"abc")
    assert framed[:1] == b"\x00" and struct.unpack(">I", framed[1:5]) == (3,) and framed[5:] == b"abc"


def test_latencies_keep_only_2xx_in_ms():
    log = "1700000000000000\t200\t1500\n1700000000000100\t503\t90\n1700000000000200\t200\t2500\nbroken line\n"
    assert h2load.latencies_ms(log) == [1.5, 2.5]


def test_parse_summary_counts():
    counts = h2load.parse_summary(SUMMARY)
    assert counts["succeeded"] == 24890 and counts["failed"] == 10 and counts["5xx"] == 10 and counts["2xx"] == 24890


def test_bounds_are_checked_before_anything_runs():
    with pytest.raises(ValueError):
        h2load.run_h2grpc("127.0.0.1:9", b"", connections=0)

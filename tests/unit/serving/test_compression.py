"""Content codings: which one an Accept-Encoding asks for, and bounded inflation."""

from __future__ import annotations

import gzip
import zlib

import pytest

from contract.errors import InvalidInput, PayloadTooLarge
from serving.transport.compression import Inflater, accepted_encoding


@pytest.mark.parametrize(
    "accept,expected",
    [
        (b"gzip", b"gzip"),
        (b"deflate", b"deflate"),
        (b"gzip, deflate", b"gzip"),
        (b"deflate;q=1.0, gzip;q=0.5", b"deflate"),
        (b"GZIP;q=0.2, br", b"gzip"),
        (b"gzip;q=0, identity", None),
        (b"br, zstd", None),
        (b"gzip;q=oops", None),
    ],
)
def test_accepted_encoding(accept, expected):
    assert accepted_encoding(accept) == expected


def _chunks(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "encoding,pack",
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda d: (lambda c: c.compress(d) + c.flush())(zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS))),
    ],
)
def test_inflates_in_chunks(encoding, pack):
    data = bytes(range(256)) * 400
    inflater = Inflater(encoding, limit=len(data))
    for chunk in _chunks(pack(data)):
        inflater.feed(chunk)
    assert inflater.finish() == data


def test_stops_one_byte_past_the_limit():
    bomb = gzip.compress(bytes(10_000_000))
    inflater = Inflater(b"gzip", limit=100_000)
    with pytest.raises(PayloadTooLarge, match="inflates to more than 100000 bytes"):
        for chunk in _chunks(bomb):
            inflater.feed(chunk)
    assert len(inflater.out) <= 100_001


def test_garbage_and_truncation_are_invalid():
    with pytest.raises(InvalidInput, match="not valid gzip"):
        Inflater(b"gzip", 1000).feed(b"hello world")
    truncated = Inflater(b"gzip", 1000)
    truncated.feed(gzip.compress(b"x" * 500)[:-10])
    with pytest.raises(InvalidInput, match="truncated"):
        truncated.finish()

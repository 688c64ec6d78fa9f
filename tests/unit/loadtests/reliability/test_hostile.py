from __future__ import annotations

import json

from loadtests.reliability.hostile import FRAMING_ERRORS, check_shape
from loadtests.reliability.rawhttp import Answer


def test_error_shapes():
    v1 = Answer(400, {}, json.dumps({"error": "bad", "type": "InvalidInput"}).encode())
    v2 = Answer(400, {}, json.dumps({"error": "bad"}).encode())
    assert check_shape(v1, "v1") == "" and check_shape(v2, "v2") == ""
    assert check_shape(v2, "v1") and check_shape(v1, "v2")
    assert check_shape(Answer(400, {}, json.dumps({"detail": "x"}).encode()), "v1")
    assert "echoes" in check_shape(Answer(404, {}, json.dumps({"error": "m" * 5000, "type": "X"}).encode()), "v1")
    assert check_shape(Answer(400, {}, b"Invalid HTTP request received."), "parser") == ""
    # a parser answer that changes (JSON one day, or an echo) is reported, so docs/reliability.md's list is revisited
    assert check_shape(Answer(400, {}, json.dumps({"error": "bad", "type": "InvalidInput"}).encode()), "parser")
    assert check_shape(Answer(400, {}, b"Invalid HTTP request received. " + b"x" * 300), "parser")


def test_framing_errors_are_raw_http_requests():
    assert len(FRAMING_ERRORS) >= 8
    for name, raw in FRAMING_ERRORS.items():
        head = raw.split(b"\r\n", 1)[0]
        assert head.split(b" ")[0] in {b"GET", b"POST"}, name
        assert b"\r\n\r\n" in raw, name

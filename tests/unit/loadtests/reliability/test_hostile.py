from __future__ import annotations

import json

from loadtests.reliability.hostile import check_shape
from loadtests.reliability.rawhttp import Answer


def test_error_shapes():
    v1 = Answer(400, {}, json.dumps({"error": "bad", "type": "InvalidInput"}).encode())
    v2 = Answer(400, {}, json.dumps({"error": "bad"}).encode())
    assert check_shape(v1, "v1") == "" and check_shape(v2, "v2") == ""
    assert check_shape(v2, "v1") and check_shape(v1, "v2")
    assert check_shape(Answer(400, {}, json.dumps({"detail": "x"}).encode()), "v1")
    assert "echoes" in check_shape(Answer(404, {}, json.dumps({"error": "m" * 5000, "type": "X"}).encode()), "v1")
    assert check_shape(Answer(400, {}, b"Invalid HTTP request received."), "parser") == ""

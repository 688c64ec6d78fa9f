"""Pure parts of loadtests.reliability: the plan, the table, error-shape checks, raw HTTP helpers."""

from __future__ import annotations

import json
import socket
import threading

from loadtests import reliability as r


def test_quick_plan_is_bounded_and_full_plan_meets_the_targets():
    quick, full = r.Plan.make(True, None), r.Plan.make(False, None)
    assert quick.soak_minutes == 0.5 and quick.fault_s <= 5 and quick.examples < full.examples
    assert full.soak_minutes == 10 and full.min_requests >= 1000 and full.soak_load == 0.8 and full.replace_bound_s == 5
    assert r.Plan.make(False, 2).soak_minutes == 2


def test_table_has_one_row_per_probe_and_escapes_pipes():
    rows = [r.Row("a|b", "1", "0", "0", True), r.Row("c", "2", "0", "3", False)]
    text = r.table(rows).splitlines()
    assert text[0] == "| probe | tried | expected | got | verdict |"
    assert text[2] == "| a\\|b | 1 | 0 | 0 | PASS |" and text[3].endswith("| FAIL |")


def test_error_shapes():
    v1 = r.Answer(400, {}, json.dumps({"error": "bad", "type": "InvalidInput"}).encode())
    v2 = r.Answer(400, {}, json.dumps({"error": "bad"}).encode())
    assert r.check_shape(v1, "v1") == "" and r.check_shape(v2, "v2") == ""
    assert r.check_shape(v2, "v1") and r.check_shape(v1, "v2")
    assert r.check_shape(r.Answer(400, {}, json.dumps({"detail": "x"}).encode()), "v1")
    assert "echoes" in r.check_shape(r.Answer(404, {}, json.dumps({"error": "m" * 5000, "type": "X"}).encode()), "v1")
    assert r.check_shape(r.Answer(400, {}, b"Invalid HTTP request received."), "parser") == ""


def test_dechunk():
    assert r._dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == b"abcde"


def test_schemathesis_failures_from_the_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"failures": [{"a": 1}, {"b": 2}]}))
    assert r._schemathesis_failures(report, "") == 2
    assert r._schemathesis_failures(tmp_path / "missing.json", "No issues found") == 0
    assert r._schemathesis_failures(tmp_path / "missing.json", "3 failures") == 3


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
    request = r.http_request("POST", "/v1/classify", b"x" * (8 << 20), chunked=True)
    got = r.exchange(server.getsockname()[1], request, timeout=10)
    thread.join()
    server.close()
    assert got.status == 413 and got.json()["type"] == "PayloadTooLarge"

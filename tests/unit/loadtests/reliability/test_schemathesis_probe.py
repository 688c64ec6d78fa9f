from __future__ import annotations

import json

from loadtests.reliability.schemathesis_probe import _schemathesis_failures


def test_schemathesis_failures_from_the_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"failures": [{"a": 1}, {"b": 2}]}))
    assert _schemathesis_failures(report, "") == 2
    assert _schemathesis_failures(tmp_path / "missing.json", "No issues found") == 0
    assert _schemathesis_failures(tmp_path / "missing.json", "3 failures") == 3

from __future__ import annotations

import pytest

from loadtests.drivers import process

FAKE_DRIVER = """
import json, sys
print(json.dumps({"event": "window_start"}), flush=True)
print("not JSON: a stray line", flush=True)
print(json.dumps({"event": "window_end"}), flush=True)
print(json.dumps({"rps": 12.5, "errors": 0}))
sys.exit(int(sys.argv[1]))
"""


def test_parse_cpus():
    assert process.parse_cpus("0") == {0}
    assert process.parse_cpus("0,2-4") == {0, 2, 3, 4}
    assert process.parse_cpus("") is None and process.parse_cpus(None) is None


def test_run_driver_reports_the_window_and_returns_the_result_line(tmp_path, monkeypatch):
    (tmp_path / "fake_driver.py").write_text(FAKE_DRIVER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    seen: list[str] = []
    assert process.run_driver("fake_driver", ["0"], label="fake", on_window=seen.append) == {"rps": 12.5, "errors": 0}
    assert seen == ["window_start", "window_end"]
    with pytest.raises(RuntimeError, match="fake failed with status 3"):
        process.run_driver("fake_driver", ["3"], label="fake")

from __future__ import annotations

from loadtests.reliability.target import Plan, Row, table


def test_quick_plan_is_bounded_and_full_plan_meets_the_targets():
    quick, full = Plan.make(True, None), Plan.make(False, None)
    assert quick.soak_minutes == 0.5 and quick.fault_s <= 5 and quick.examples < full.examples
    assert full.soak_minutes == 10 and full.min_requests >= 1000 and full.soak_load == 0.8 and full.replace_bound_s == 10
    assert Plan.make(False, 2).soak_minutes == 2
    # the full soak runs both senders (the drift was seen with a Python one); make test only h2load
    assert full.soak_senders == ("h2load", "python") and quick.soak_senders == ("h2load",) and full.soak_models == ("lstm",)


def test_table_has_one_row_per_probe_and_escapes_pipes():
    rows = [Row("a|b", "1", "0", "0", True), Row("c", "2", "0", "3", False)]
    text = table(rows).splitlines()
    assert text[0] == "| probe | tried | expected | got | verdict |"
    assert text[2] == "| a\\|b | 1 | 0 | 0 | PASS |" and text[3].endswith("| FAIL |")

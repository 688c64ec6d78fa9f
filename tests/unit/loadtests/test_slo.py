from __future__ import annotations

import pytest

from loadtests import slo
from loadtests.slo import EndpointStats, Profile

STATS_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/v1/classify,282,0,82,110.2,5,458,300,14.12,0.0,82,130,160,180,250,290,360,410,460,460,460
grpc,Predict,87,1,66,82.0,5,297,200,4.36,0.05,66,98,120,130,180,230,290,300,300,300,300
GET,/v1/generate/manifold,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,369,1,80,104.0,5,458,270,18.48,0.05,80,120,150,170,240,280,350,400,460,460,460
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("45", 45.0), (10, 10.0), (" 1m 5s ", 65.0)],
)
def test_parse_duration(text, seconds):
    assert slo.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "0", "5s10", "inf"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        slo.parse_duration(text)


def test_bundled_profiles_load_and_are_bounded():
    default = slo.load_profile("default")
    assert default.name == "default" and default.max_error_rate == 0.0
    assert default.duration_s == 60.0 and 1 <= default.users <= slo.MAX_USERS
    assert default.limit_for("POST /v1/classify") == default.p99_ms["POST /v1/classify"]
    assert default.limit_for("POST /somewhere/else") == default.default_p99_ms
    smoke = slo.load_profile("smoke")
    assert smoke.users == 2 and smoke.duration_s == 10.0


def test_unknown_profile_names_the_bundled_ones():
    with pytest.raises(ValueError, match="default"):
        slo.load_profile("nope")


def test_profile_from_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[load]\nusers = 3\nduration = "5s"\n[slo]\ndefault_p99_ms = 50\n[slo.p99_ms]\n"grpc Predict" = 20\n')
    profile = slo.load_profile(str(path))
    assert (profile.name, profile.users, profile.duration_s) == ("mine", 3, 5.0)
    assert profile.limit_for("grpc Predict") == 20 and profile.limit_for("POST /v1/classify") == 50


@pytest.mark.parametrize(
    "data",
    [
        {"load": {"users": 0}},
        {"load": {"users": slo.MAX_USERS + 1}},
        {"load": {"duration": "2h"}},
        {"load": {"spawn_rate": 0}},
        {"slo": {"max_error_rate": 2}},
        {"slo": {"p99_ms": {"POST /x": 0}}},
        {"slo": {"p99": 5}},
        {"other": {}},
    ],
)
def test_profile_rejects_unbounded_or_unknown(data):
    with pytest.raises(ValueError):
        slo.profile_from_mapping("bad", data)


def test_read_stats_csv(tmp_path):
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV)
    rows = slo.read_stats_csv(path)
    assert [r.endpoint for r in rows] == ["POST /v1/classify", "grpc Predict", "GET /v1/generate/manifold", "Aggregated"]
    assert rows[0].p99_ms == 410 and rows[0].p50_ms == 82 and rows[0].requests == 282
    assert rows[2].p99_ms is None
    assert rows[1].error_rate == pytest.approx(1 / 87)


def _profile(**p99: float) -> Profile:
    return Profile("t", p99_ms={k.replace("_", " "): v for k, v in p99.items()}, default_p99_ms=1000)


def test_verdict_passes_within_limits():
    stats = [EndpointStats("POST", "/v1/classify", 100, 0, 20, 90, 10), EndpointStats("", "Aggregated", 100, 0, 20, 90, 10)]
    v = slo.verdict(stats, Profile("t", p99_ms={"POST /v1/classify": 100}))
    assert v.ok and not v.breaches
    assert slo.render(v).splitlines()[-1] == "SLO verdict: PASS"


def test_verdict_flags_p99_and_errors(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(STATS_CSV)
    v = slo.verdict(slo.read_stats_csv(path), Profile("t", p99_ms={"POST /v1/classify": 150, "grpc Predict": 400}))
    failed = {(c.endpoint, c.what) for c in v.breaches}
    assert failed == {("all requests", "error rate"), ("grpc Predict", "error rate"), ("POST /v1/classify", "p99 ms")}
    assert not v.ok
    assert any("GET /v1/generate/manifold: no requests" in n for n in v.notes)
    text = slo.render(v)
    assert text.splitlines()[-1] == "SLO verdict: FAIL (3 breaches)"
    assert "FAIL  POST /v1/classify" in text


def test_verdict_error_rate_budget_is_respected():
    stats = [EndpointStats("POST", "/a", 1000, 1, 1, 5, 1)]
    assert slo.verdict(stats, Profile("t", max_error_rate=0.01)).ok
    assert not slo.verdict(stats, Profile("t", max_error_rate=0.0)).ok


def test_verdict_all_failed_has_no_p99_and_fails():
    v = slo.verdict([EndpointStats("POST", "/a", 5, 5, None, None, 1)], Profile("t", max_error_rate=1.0))
    p99 = next(c for c in v.checks if c.what == "p99 ms")
    assert p99.observed is None and not p99.ok


def test_verdict_with_nothing_measured_fails():
    v = slo.verdict([EndpointStats("", "Aggregated", 0, 0, None, None, 0)], Profile("t"))
    assert not v.ok
    assert slo.render(v).endswith("SLO verdict: FAIL (nothing was measured)")


def test_limits_without_traffic_are_noted():
    v = slo.verdict([EndpointStats("POST", "/a", 3, 0, 1, 2, 1)], _profile(**{"grpc_Predict": 5}))
    assert v.ok
    assert any("grpc Predict" in n for n in v.notes)


def test_check_bounds():
    slo.check_bounds(1, 1, 1)
    for args in [(0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, slo.MAX_DURATION_S + 1), (slo.MAX_USERS + 1, 1, 1)]:
        with pytest.raises(ValueError):
            slo.check_bounds(*args)

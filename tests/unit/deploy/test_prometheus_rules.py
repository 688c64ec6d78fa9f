"""deploy/prometheus: promtool accepts the alert rules and the Prometheus config, the rules' own unit tests
(alerts_test.yml) pass, and every series and label the rules read is one the service really exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"
# Labels Prometheus attaches to every scraped series (the scrape job and target), and the histogram's bucket bound.
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    why = "promtool is missing: `apt-get install prometheus` (Debian's package ships /usr/bin/promtool)"
    if in_ci():  # in CI a missing tool is a missing install step, never a skip
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def run_promtool(*args: str) -> str:
    result = subprocess.run([promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    output = run_promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert f"SUCCESS: {len(rules())} rules found" in output, output


def test_promtool_checks_the_config_and_it_scrapes_the_service() -> None:
    output = run_promtool("check", "config", str(CONFIG.relative_to(REPO)))
    assert "SUCCESS: 1 rule files found" in output, output
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "digits" and job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": ["digits:3000"]}]


def test_rule_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert "SUCCESS" in output, output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    assert document["rule_files"] == [RULES.name]
    cases = [case for test in document["tests"] for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it stays quiet"


def test_every_rule_has_a_duration_a_severity_and_annotations() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(set(names)) == len(names), names
    assert {"DigitsTargetDown", "DigitsNotReady", "DigitsHigh503Rate", "DigitsQueueTimeHigh"} <= set(names)
    for rule in rules():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        # Every rule reads the service's own scrape job.
        assert 'job="digits"' in rule["expr"], rule


# What the service renders on /metrics, driven through the real middleware and engine metrics in a fresh
# interpreter (prometheus_client registers each name once per process), in BentoML's multiprocess mode as a
# worker runs it (PROMETHEUS_MULTIPROC_DIR): sample name -> label names.
EXPORTED_SCRIPT = r"""
import asyncio, json
from prometheus_client.parser import text_string_to_metric_families
from serving.core.metrics import engine_metrics
from serving.transport.middleware import HttpMetrics, RouteTemplates

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b""})

async def get(middleware, path):
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await middleware({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()

async def main():
    metrics = engine_metrics()
    metrics.observe_batch("mnist-lstm", "1", [0.001], (0.0001, 0.002, 0.0001), 1)
    metrics.set_depth("mnist-lstm", "1", 0)
    middleware = HttpMetrics(app, RouteTemplates([], exact=["/readyz"]), service_name="digits", buckets=(0.1, 1.0))
    await get(middleware, "/readyz")
    return await get(middleware, "/metrics")

exported = {}
for family in text_string_to_metric_families(asyncio.run(main())):
    for sample in family.samples:
        exported.setdefault(sample.name, set()).update(sample.labels)
print(json.dumps({name: sorted(labels) for name, labels in exported.items()}))
"""


@cache
def exported_series() -> dict[str, frozenset[str]]:
    with tempfile.TemporaryDirectory(prefix="prometheus-multiproc-") as multiproc:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc, "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-c", EXPORTED_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {name: frozenset(labels) for name, labels in json.loads(result.stdout).items()}


def selectors(expr: str) -> list[tuple[str, set[str], dict[str, str]]]:
    """(metric name, label names matched, label values matched with =) of every series selector in ``expr``."""
    found = []
    for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers)
        found.append((name, {label for label, _, _ in pairs}, {label: value for label, op, value in pairs if op == "="}))
    return found


def bare_names(expr: str) -> set[str]:
    """Identifiers left once strings, matchers, ranges, function calls and grouping clauses are removed."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", expr)
    return {word for word in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr) if word.lower() not in PROMQL_WORDS}


def test_the_exported_series_are_what_the_service_documents() -> None:
    exported = exported_series()
    for name in ("bentoml_service_request_total", "bentoml_service_request_duration_seconds_bucket", "model_queue_seconds_bucket"):
        assert name in exported, sorted(exported)
    assert {"endpoint", "http_response_code"} <= exported["bentoml_service_request_total"]
    assert {"model", "version", "le"} <= exported["model_queue_seconds_bucket"]


def unexported(expr: str) -> list[str]:
    """What ``expr`` reads that the service does not export: metric names, label names, endpoint values."""
    exported = exported_series()
    service = (REPO / "serving" / "service.py").read_text()
    found = selectors(expr)
    problems = [] if found else ["no series selector"]
    problems += [f"bare name {name}" for name in bare_names(expr) - {name for name, _, _ in found}]
    for name, labels, values in found:
        known = TARGET_LABELS if name == "up" else exported.get(name, frozenset()) | TARGET_LABELS  # up: per target
        if name != "up" and name not in exported:
            problems.append(f"metric {name}")
        problems += [f"label {name}{{{label}}}" for label in sorted(labels - known)]
        # An endpoint label is a route template; the exact ones (/readyz, /livez, ...) are listed in serving/service.py.
        if "endpoint" in values and f'"{values["endpoint"]}"' not in service:
            problems.append(f"endpoint {values['endpoint']}")
        # Grouping labels must be ones the summed series carry.
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            problems += [f"by {label} on {name}" for label in sorted({s.strip() for s in clause.split(",")} - known)]
    return problems


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rule_reads_only_series_and_labels_the_service_exports(rule: dict[str, Any]) -> None:
    assert unexported(rule["expr"]) == [], rule["alert"]


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ('rate(model_queue_second_bucket{job="digits"}[5m]) > 0', "metric model_queue_second_bucket"),
        ('rate(bentoml_service_request_total{job="digits", status="503"}[5m]) > 0', "label bentoml_service_request_total{status}"),
        ('sum by (pod) (rate(model_queue_seconds_count{job="digits"}[5m])) > 0', "by pod on model_queue_seconds_count"),
        ('rate(bentoml_service_request_total{job="digits", endpoint="/ready"}[5m]) > 0', "endpoint /ready"),
        ('model_queue_depth{job="digits"} > model_queue_limit', "bare name model_queue_limit"),
    ],
)
def test_the_check_catches_a_series_the_service_does_not_export(expr: str, problem: str) -> None:
    assert problem in unexported(expr)

"""The server under test, how much of everything the run does, and the table's rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .. import workload
from ..drivers.core import percentile
from ..drivers.http import build_request
from ..server import Service, processes

MiB = 1 << 20


@dataclass
class Row:
    """One line of the table: a probe, what it tried, what was expected and what it got."""

    probe: str
    tried: str
    expected: str
    got: str
    ok: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"


@dataclass
class Plan:
    """How much of everything: ``quick`` (make test) or full (make reliability)."""

    examples: int  # Schemathesis examples per operation
    min_requests: int  # Schemathesis requests the run must reach
    fault_s: float  # seconds of load per fault probe
    soak_minutes: float
    soak_load: float = 0.8  # of capacity
    connections: int = 32
    overload_clients: int = 800  # paced connections at 150 %: more than the workers may hold (SERVING_MAX_IN_FLIGHT)
    replace_bound_s: float = 10.0  # kill -9: the new worker serving within this of its start (the host's respawn aside)
    p99_slack_ms: float = 20.0  # soak: last window's p99 <= 1.5 x the first + this
    # soak: one run per (sender, model). h2load (C) measures the server; the Python paced sender
    # (loadtests.drivers.http.paced) stresses it differently (its own bursts, reconnects) and must keep pace.
    soak_senders: tuple[str, ...] = ("h2load", "python")
    soak_models: tuple[str, ...] = ("lstm",)

    @classmethod
    def make(cls, quick: bool, minutes: float | None) -> Plan:
        if quick:
            # on 2 shared cores the client's own CPU moves the capacity by tens of %: the bounded form soaks at 50 %
            # On 2 cores shared with other work short windows are noisy, so the bounded form allows more.
            # BentoML's supervisor (circus) looks for dead workers every 10 s (check_delay=10, not
            # configurable through BentoML's public API): the kill -9 probe bounds that and our start-up apart.
            return cls(
                examples=12,
                min_requests=200,
                fault_s=4.0,
                soak_minutes=minutes if minutes is not None else 0.5,
                soak_load=0.5,
                replace_bound_s=12.0,  # start-up under 32 connections of load on 2 cores: ~7 s (3 s idle)
                p99_slack_ms=100.0,
                soak_senders=("h2load",),
            )
        return cls(examples=60, min_requests=1000, fault_s=10.0, soak_minutes=minutes if minutes is not None else 10.0)


def table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table."""
    head = ("probe", "tried", "expected", "got", "verdict")
    cells = [head] + [(r.probe, r.tried, r.expected, r.got, r.verdict) for r in rows]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|---|---|---|---|---|")
    return "\n".join(lines)


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile of ``values`` (seconds) in ms; 0 when there are none."""
    return (percentile(sorted(values), q) or 0.0) * 1000.0


@dataclass
class Target:
    """The server under test (started by :mod:`loadtests.server`), its settings, test images, and the rows so far."""

    service: Service
    settings: dict[str, Any]
    images: np.ndarray
    rows: list[Row] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.service.http_url

    @property
    def grpc(self) -> str:
        return self.service.grpc_target

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def add(self, probe: str, tried: Any, expected: str, got: str, ok: bool) -> bool:
        row = Row(probe, str(tried), expected, got, bool(ok))
        self.rows.append(row)
        print(f"  {row.verdict}  {probe}: {got}", flush=True)
        return row.ok

    def healthy(self) -> tuple[bool, str]:
        """HTTP /readyz 200 and gRPC health SERVING, and the launcher still running."""
        import grpc
        import httpx
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if self.service.process.poll() is not None:
            return False, f"the server exited with {self.service.process.returncode}"
        try:
            ready = httpx.get(f"{self.url}/readyz", timeout=5).status_code
            with grpc.insecure_channel(self.grpc) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        except Exception as e:  # noqa: BLE001 - any failure is unhealthy
            return False, f"{type(e).__name__}: {e}"
        ok = ready == 200 and status == health_pb2.HealthCheckResponse.SERVING
        return ok, "" if ok else f"readyz {ready}, gRPC health {status}"

    def worker_pids(self) -> list[int]:
        return sorted(p.pid for role, p in processes(self.service) if role == "HTTP worker")

    def rss_mb(self) -> float:
        total = 0.0
        for role, proc in processes(self.service):
            if role == "HTTP worker":
                try:
                    total += proc.memory_info().rss / MiB
                except Exception:  # noqa: BLE001 - a worker that just went away
                    pass
        return total

    def classify_body(self, index: int = 0, model: str = "lstm") -> bytes:
        """The ``POST /v1/classify`` body of test image ``index`` for ``model``."""
        return workload.classify_body(workload.images_json(self.images[index]), model)

    def classify_requests(self, n: int = 64, model: str = "lstm") -> list[bytes]:
        """Keep-alive ``POST /v1/classify`` requests for the first ``n`` test images."""
        host = urlsplit(self.url).netloc
        return [build_request("POST", host, "/v1/classify", self.classify_body(i, model)) for i in range(min(n, len(self.images)))]

    def metrics(self) -> dict[str, float]:
        """Requests answered so far by status class, from the server's /metrics (every worker)."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "bentoml_service_request_total":
                    code = sample.labels.get("http_response_code", "0")
                    key = f"{code[0]}xx"
                    counts[key] = counts.get(key, 0.0) + sample.value
                    counts["all"] = counts.get("all", 0.0) + sample.value
        return counts

"""SLO profiles (TOML) and the verdict over locust's ``*_stats.csv``."""

from __future__ import annotations

import csv
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
# Every run is bounded; these caps hold whatever a profile or a flag asks for.
MAX_USERS = 200
MAX_SPAWN_RATE = 50.0
MAX_DURATION_S = 1800.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"60s"``, ``"2m"``, ``"1m30s"``, ``"500ms"`` or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        try:
            seconds = float(raw)
        except ValueError:
            parts = _DURATION.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise ValueError(f"duration must look like 60s, 2m, 1m30s or 500ms, got {text!r}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Profile:
    """Load shape defaults and the limits the verdict checks."""

    name: str
    users: int = 10
    spawn_rate: float = 5.0
    duration_s: float = 60.0
    max_error_rate: float = 0.0
    default_p99_ms: float = 1000.0
    p99_ms: Mapping[str, float] = field(default_factory=dict)

    def limit_for(self, endpoint: str) -> float:
        """The p99 limit (ms) for ``"METHOD NAME"``, e.g. ``"POST /v1/classify"``."""
        return float(self.p99_ms.get(endpoint, self.default_p99_ms))


def check_bounds(users: int, spawn_rate: float, duration_s: float) -> None:
    """ValueError unless the load shape is within the caps (a load run is never unbounded)."""
    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"users must be within 1..{MAX_USERS}, got {users}")
    if not 0 < spawn_rate <= MAX_SPAWN_RATE:
        raise ValueError(f"spawn rate must be within (0, {MAX_SPAWN_RATE:g}], got {spawn_rate:g}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be within (0, {MAX_DURATION_S:g}] seconds, got {duration_s:g}")


def profile_from_mapping(name: str, data: Mapping[str, Any]) -> Profile:
    """A :class:`Profile` from parsed TOML (``[load]`` and ``[slo]`` tables); unknown keys are errors."""
    unknown = set(data) - {"load", "slo"}
    load, slo = dict(data.get("load", {})), dict(data.get("slo", {}))
    unknown |= {f"load.{k}" for k in set(load) - {"users", "spawn_rate", "duration"}}
    unknown |= {f"slo.{k}" for k in set(slo) - {"max_error_rate", "default_p99_ms", "p99_ms"}}
    if unknown:
        raise ValueError(f"profile {name}: unknown keys {sorted(unknown)}")
    p99 = {str(k): float(v) for k, v in dict(slo.get("p99_ms", {})).items()}
    profile = Profile(
        name=name,
        users=int(load.get("users", Profile.users)),
        spawn_rate=float(load.get("spawn_rate", Profile.spawn_rate)),
        duration_s=parse_duration(load.get("duration", Profile.duration_s)),
        max_error_rate=float(slo.get("max_error_rate", Profile.max_error_rate)),
        default_p99_ms=float(slo.get("default_p99_ms", Profile.default_p99_ms)),
        p99_ms=p99,
    )
    check_bounds(profile.users, profile.spawn_rate, profile.duration_s)
    if not 0 <= profile.max_error_rate <= 1 or any(v <= 0 for v in [profile.default_p99_ms, *p99.values()]):
        raise ValueError(f"profile {name}: max_error_rate must be within [0, 1] and every p99 limit positive")
    return profile


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name (``default``, ``smoke``) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
        raise ValueError(f"no SLO profile {name_or_path!r}; bundled: {bundled}, or give a .toml path")
    with path.open("rb") as f:
        return profile_from_mapping(path.stem, tomllib.load(f))


@dataclass(frozen=True)
class EndpointStats:
    """One row of locust's ``*_stats.csv``."""

    method: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None
    rps: float

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.name}".strip()

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_stats_csv(path: str | Path) -> list[EndpointStats]:
    """Rows of locust's ``<prefix>_stats.csv``, the ``Aggregated`` row last."""
    rows = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                EndpointStats(
                    method=row.get("Type", ""),
                    name=row["Name"],
                    requests=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    p50_ms=_number(row.get("50%")),
                    p99_ms=_number(row.get("99%")),
                    rps=_number(row.get("Requests/s")) or 0.0,
                )
            )
    return rows


@dataclass(frozen=True)
class Check:
    """One SLO check: what was measured against which limit."""

    endpoint: str
    what: str  # "error rate" | "p99 ms"
    observed: float | None
    limit: float
    ok: bool


@dataclass(frozen=True)
class Verdict:
    """Every check of a run; ``ok`` only when all pass and something was measured."""

    profile: str
    checks: list[Check]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def breaches(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def verdict(stats: Iterable[EndpointStats], profile: Profile) -> Verdict:
    """Error rate (overall and per endpoint) and p99 per endpoint against ``profile``."""
    checks: list[Check] = []
    notes: list[str] = []
    rows = list(stats)
    endpoints = [s for s in rows if s.name != "Aggregated"]
    total = next((s for s in rows if s.name == "Aggregated"), None)
    if total is None:
        total = EndpointStats("", "Aggregated", sum(s.requests for s in endpoints), sum(s.failures for s in endpoints), None, None, 0.0)
    if total.requests == 0:
        notes.append("no request was made: nothing to judge")
        return Verdict(profile.name, [], notes)
    checks.append(Check("all requests", "error rate", total.error_rate, profile.max_error_rate, total.error_rate <= profile.max_error_rate))
    for s in endpoints:
        if s.requests == 0:
            notes.append(f"{s.endpoint}: no requests")
            continue
        checks.append(Check(s.endpoint, "error rate", s.error_rate, profile.max_error_rate, s.error_rate <= profile.max_error_rate))
        limit = profile.limit_for(s.endpoint)
        if s.requests == s.failures or s.p99_ms is None:
            checks.append(Check(s.endpoint, "p99 ms", None, limit, False))
        else:
            checks.append(Check(s.endpoint, "p99 ms", s.p99_ms, limit, s.p99_ms <= limit))
    measured = {s.endpoint for s in endpoints if s.requests}
    for endpoint in sorted(set(profile.p99_ms) - measured):
        notes.append(f"{endpoint}: has a limit but got no requests in this run")
    return Verdict(profile.name, checks, notes)


def render(v: Verdict) -> str:
    """The verdict as a few lines of text, ending with ``SLO verdict: PASS|FAIL``."""
    lines = [f"SLO checks (profile {v.profile}):"]
    for c in v.checks:
        if c.what == "error rate":
            shown = f"{c.observed:.2%}" if c.observed is not None else "n/a"
            limit = f"{c.limit:.2%}"
        else:
            shown = f"{c.observed:.0f}" if c.observed is not None else "n/a"
            limit = f"{c.limit:.0f}"
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.endpoint:<28} {c.what:<10} {shown:>8}  (limit {limit})")
    lines.extend(f"  note: {n}" for n in v.notes)
    if v.ok:
        lines.append("SLO verdict: PASS")
    elif not v.checks:
        lines.append("SLO verdict: FAIL (nothing was measured)")
    else:
        n = len(v.breaches)
        lines.append(f"SLO verdict: FAIL ({n} breach{'es' if n != 1 else ''})")
    return "\n".join(lines)

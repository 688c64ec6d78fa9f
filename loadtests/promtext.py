"""Prometheus text from ``/metrics``: samples, and histogram deltas over a measured run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition as ``{(name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


@dataclass(frozen=True)
class HistogramDelta:
    """What a histogram recorded between two scrapes: observations, their sum, and the mean."""

    count: float
    total: float

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def histogram_delta(before: Samples, after: Samples, name: str, match: Mapping[str, str] | None = None) -> HistogramDelta:
    """``name``'s ``_count``/``_sum`` increase from ``before`` to ``after``, summed over series whose labels match.

    A series that only appears in ``after`` counts from zero; one whose value went down
    (a restarted worker) counts from zero too, as Prometheus' ``increase()`` does.
    """
    match = dict(match or {})

    def increase(suffix: str) -> float:
        total = 0.0
        for (sample_name, labels), value in after.items():
            if sample_name != name + suffix:
                continue
            if any(dict(labels).get(k) != v for k, v in match.items()):
                continue
            previous = before.get((sample_name, labels), 0.0)
            total += value - previous if value >= previous else value
        return total

    return HistogramDelta(count=increase("_count"), total=increase("_sum"))


def label_values(samples: Samples, name: str, label: str) -> list[str]:
    """The distinct values of ``label`` across ``name``'s series (e.g. the models a histogram saw)."""
    return sorted({dict(labels)[label] for (n, labels) in samples if n == name and label in dict(labels)})

"""Read a Prometheus text exposition the way a scraper does (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from workers.jobs import metrics

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def samples(text: str | bytes) -> Samples:
    """Every sample: (name, sorted labels) → value."""
    if isinstance(text, bytes):
        text = text.decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a counter not yet incremented)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def by_labels(found: Samples, name: str) -> dict[Labels, float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def local() -> Samples:
    """What this test process (and any process sharing its directory) has recorded so far."""
    return samples(metrics.exposition())

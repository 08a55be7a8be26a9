"""Prometheus metrics, through prometheus-client.

Process-local counters and latency histograms for the hot paths, plus gauges read at
scrape time (ticket states and runs from the database, the queue depth, how selects were
served), so every replica reports the shared backlog the same way. Each app has its own
registry (several apps can live in one process, as in the tests). With several processes
behind one port (`uvicorn --workers N`), set PROMETHEUS_MULTIPROC_DIR to an empty
directory and the scrape sums the processes' counters and histograms
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # the `_created` sample of every counter is noise here

BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Gauges = dict[str, "float | dict[str, float]"]


class _ScrapeGauges:
    """A collector yielding the gauges handed to `Metrics.render` for this scrape."""

    def __init__(self) -> None:
        self.values: Gauges = {}

    def collect(self):
        for name, value in sorted(self.values.items()):
            if isinstance(value, dict):
                labelled = {k.partition("=")[0] for k in value}
                family = GaugeMetricFamily(f"curator_{name}", name.replace("_", " "),
                                           labels=sorted(labelled))
                for label, v in sorted(value.items()):
                    family.add_metric([label.partition("=")[2]], v)
            else:
                family = GaugeMetricFamily(f"curator_{name}", name.replace("_", " "),
                                           value=value)
            yield family


class Metrics:
    """One app's counters and histograms (`curator_<name>_total`,
    `curator_<name>_seconds`), made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._gauges = _ScrapeGauges()
        self.registry.register(self._gauges)

    def inc(self, name: str, value: float = 1.0) -> None:
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = Counter(
                    f"curator_{name}", name.replace("_", " "), registry=self.registry)
        counter.inc(value)

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            hist = self._histograms.get(name)
            if hist is None:
                hist = self._histograms[name] = Histogram(
                    f"curator_{name}_seconds", f"{name} latency", buckets=BUCKETS,
                    registry=self.registry)
        hist.observe(seconds)

    def render(self, gauges: Gauges) -> bytes:
        """The exposition text: this process's (or, in multiprocess mode, all processes')
        counters and histograms, and `gauges` as read for this scrape."""
        with self._lock:
            self._gauges.values = gauges
            if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                return generate_latest(self.registry)
            scrape = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(scrape)
            scrape.register(self._gauges)
            return generate_latest(scrape)

"""Prometheus metrics in the text exposition format, without a client library.

Process-local counters and latency histograms for the hot paths, plus gauges read from
the database at scrape time (ticket states, runs) and the queue depth, so every replica
reports the shared backlog the same way.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    """Thread-safe counters and histograms of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = defaultdict(float)
        self.histograms: dict[str, Histogram] = defaultdict(Histogram)

    def inc(self, name: str, value: float = 1.0) -> None:
        with self._lock:
            self.counters[name] += value

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name].observe(seconds)

    def render(self, gauges: dict[str, float | dict[str, float]]) -> str:
        lines: list[str] = []
        with self._lock:
            for name, h in sorted(self.histograms.items()):
                lines.append(f"# TYPE curator_{name}_seconds histogram")
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), h.counts):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'curator_{name}_seconds_bucket{{le="{le}"}} {cumulative}')
                lines.append(f"curator_{name}_seconds_sum {h.total!r}")
                lines.append(f"curator_{name}_seconds_count {h.n}")
            for name, value in sorted(self.counters.items()):
                lines.append(f"# TYPE curator_{name}_total counter")
                lines.append(f"curator_{name}_total {value:g}")
        for name, value in sorted(gauges.items()):
            lines.append(f"# TYPE curator_{name} gauge")
            if isinstance(value, dict):
                for label, v in sorted(value.items()):
                    key, _, val = label.partition("=")
                    lines.append(f'curator_{name}{{{key}="{val}"}} {v:g}')
            else:
                lines.append(f"curator_{name} {value:g}")
        return "\n".join(lines) + "\n"

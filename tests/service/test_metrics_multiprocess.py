"""With PROMETHEUS_MULTIPROC_DIR set (several uvicorn workers behind one port), a scrape
of any process reports the counters and histograms of all of them."""

from __future__ import annotations

import os
import subprocess
import sys

INC = """
from curator.core.metrics import Metrics
m = Metrics()
m.inc("selected_problems", {n})
m.observe("select", 0.003)
"""

SCRAPE = """
from curator.core.metrics import Metrics
print(Metrics().render({{"runs": 2.0}}).decode())
"""


def test_a_scrape_sums_the_processes(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 5):  # two "workers", each its own process
        subprocess.run([sys.executable, "-c", INC.format(n=n)], env=env, check=True)
    out = subprocess.run([sys.executable, "-c", SCRAPE.format()], env=env, check=True,
                         capture_output=True, text=True).stdout
    values = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines()
                                       if line and not line.startswith("#"))}
    assert values["curator_selected_problems_total"] == 8
    assert values["curator_select_seconds_count"] == 2
    assert values["curator_runs"] == 2

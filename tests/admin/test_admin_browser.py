"""The dashboard in real headless Chromium against a real server with real runs.

Needs Debian's `chromium` and the `playwright` Python package (no `playwright install`:
the system browser is used). Saves a screenshot to artifacts/admin-dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ADMIN, ROOT

CHROMIUM = os.environ.get("CURATOR_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CURATOR_TEST_ARTIFACTS", ROOT / "artifacts"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
DIM = 16
LEVELS = ["easy", "medium", "hard", "olympiad"]
ROUNDS = 16

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: `sudo apt-get install chromium` (Debian; "
                f"CI does so in .ci/run), or set CURATOR_TEST_CHROMIUM to a Chromium binary",
                allow_module_level=True)
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="the `playwright` package is not installed (dev extra)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    """A real uvicorn process on a free loopback port over a temporary SQLite data dir."""
    from curator.cli import migrate
    from curator.core.config import Settings

    data = tmp_path / "data"
    migrate(Settings(data_dir=data))
    port = _free_port()
    env = {**os.environ, "CURATOR_DATA_DIR": str(data), "CURATOR_ADMIN_TOKEN": ADMIN,
           "CURATOR_DEVICE": "cpu", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "curator.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _populate(url: str) -> dict[str, int]:
    """A bank in four difficulty clusters; a learning run rewarded on `medium`, a uniform one."""
    rng = np.random.default_rng(0)
    n = 480
    centres = rng.standard_normal((4, DIM)) * 3
    labels = np.arange(n) % 4
    vecs = centres[labels] + rng.standard_normal((n, DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    skills = ["algebra", "geometry", "number theory"]
    problems = [{"external_id": f"{LEVELS[labels[i]]}-{i:04d}",
                 "prompt": f"Problem {i}: find all integers x with x^2 + {i % 17}x + {i % 5} "
                           f"divisible by {labels[i] + 2}.",
                 "metadata": {"difficulty": LEVELS[labels[i]], "skill": skills[i % 3]},
                 "embedding": vecs[i].round(6).tolist()} for i in range(n)]
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        bank = c.post("/v1/banks", json={"name": "math-by-difficulty", "embedder": "provided",
                                         "dim": DIM}).json()["bank_id"]
        assert c.post(f"/v1/banks/{bank}/problems", json={"problems": problems}).status_code == 200
        runs = {}
        for name, strategy, params in [("actor-curator", "actor_curator", {"dormant_steps": 2}),
                                       ("uniform-baseline", "uniform", {})]:
            r = c.post("/v1/runs", json={"bank_id": bank, "strategy": strategy,
                                         "params": params, "seed": 3, "name": name})
            run_id, token = r.json()["run_id"], r.json()["token"]
            runs[name] = run_id
            run_auth = {"Authorization": f"Bearer {token}"}
            for step in range(ROUNDS):
                ticket = c.post(f"/v1/runs/{run_id}/select", headers=run_auth,
                                json={"batch_size": 32, "pool_size": 128}).json()
                # utilities (medium teaches most) with the group's rewards: medium's
                # groups differ, the rest are all-solved or all-failed (no signal)
                results = [{"problem_id": p["problem_id"],
                            "utility": (2e-3 if p["metadata"]["difficulty"] == "medium"
                                        else 1e-4 * float(rng.random())),
                            "rewards": ([1.0, 0.0, 1.0, 0.0]
                                        if p["metadata"]["difficulty"] == "medium"
                                        else [float(step > 8)] * 4)}
                           for p in ticket["problems"]]
                r = c.post(f"/v1/runs/{run_id}/feedback", headers=run_auth,
                           json={"ticket_id": ticket["ticket_id"], "results": results})
                assert r.status_code == 202, r.text
                deadline = time.monotonic() + 30
                while c.get(f"/v1/runs/{run_id}").json()["tickets"]["applied"] <= step:
                    assert time.monotonic() < deadline, "the worker did not apply feedback"
                    time.sleep(0.02)
                if step % 4 == 3:  # the trainer's own eval, every 4 steps
                    r = c.post(f"/v1/runs/{run_id}/metrics", headers=run_auth, json={
                        "step": step + 1, "metrics": {"eval_accuracy": 0.1 + 0.02 * step}})
                    assert r.status_code == 200, r.text
    return runs


def _other_bank(url: str, n_runs: int) -> int:
    """A second bank whose problems carry `topic`, not `difficulty`, and `n_runs` runs on
    it (the first with two applied steps); the id of that first run."""
    auth = {"Authorization": f"Bearer {ADMIN}"}
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        bank = c.post("/v1/banks", json={"name": "by-topic", "embedder": "provided",
                                         "dim": DIM}).json()["bank_id"]
        vecs = rng.standard_normal((60, DIM))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        problems = [{"external_id": f"t-{i}", "prompt": f"topic problem {i}",
                     "metadata": {"topic": ["sets", "graphs", "series"][i % 3]},
                     "embedding": vecs[i].round(6).tolist()} for i in range(60)]
        assert c.post(f"/v1/banks/{bank}/problems",
                      json={"problems": problems}).status_code == 200
        ids = [c.post("/v1/runs", json={"bank_id": bank, "strategy": "uniform",
                                        "name": f"topic-{k:02d}"}).json()
               for k in range(n_runs)]
        first, run_auth = ids[0]["run_id"], {"Authorization": f"Bearer {ids[0]['token']}"}
        for step in range(2):
            ticket = c.post(f"/v1/runs/{first}/select", headers=run_auth,
                            json={"batch_size": 8, "pool_size": 32}).json()
            c.post(f"/v1/runs/{first}/feedback", headers=run_auth, json={
                "ticket_id": ticket["ticket_id"],
                "results": [{"problem_id": p["problem_id"], "utility": 0.0}
                            for p in ticket["problems"]]})
            deadline = time.monotonic() + 30
            while c.get(f"/v1/runs/{first}").json()["tickets"]["applied"] <= step:
                assert time.monotonic() < deadline, "the worker did not apply feedback"
                time.sleep(0.02)
    return first


def test_dashboard_renders_runs_in_chromium(server):
    runs = _populate(server)
    learn, flat = runs["actor-curator"], runs["uniform-baseline"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "admin-dashboard.png"
    errors: list[str] = []
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server}/admin")
            page.wait_for_selector("#login:not([hidden])")
            assert page.is_hidden("#dash")

            page.fill("#token", "wrong-token")
            page.click("#login-form button")
            page.wait_for_selector("#login-error:has-text('refused')")

            page.fill("#token", ADMIN)
            page.click("#login-form button")
            page.wait_for_selector(f"#run-picker option[value='{flat}']", state="attached")
            assert page.evaluate("sessionStorage.getItem('curator.adminToken')") == ADMIN

            page.select_option("#run-picker", str(learn))
            page.wait_for_function(
                "document.querySelector('#run-head h1')?.textContent.includes('actor-curator')")
            page.wait_for_selector("#chart-mass-time svg path[data-series='medium']")
            assert page.input_value("#field-picker") == "difficulty"
            legend = page.inner_text("#chart-mass-time .legend")
            assert all(level in legend for level in LEVELS), legend
            for chart in ("entropy", "utility", "loss", "source", "hist", "mass-now", "control",
                          "reward", "zero"):
                paths = page.locator(f"#chart-{chart} svg [data-series]").count()
                assert paths > 0, f"chart {chart} drew nothing"
            assert "entropy / log M" in page.inner_text("#chart-entropy .legend")
            assert "mean utility" in page.inner_text("#chart-utility .legend")
            assert page.locator("#top-problems tbody tr").count() == 15
            assert "medium" in page.inner_text("#top-problems tbody tr:first-child")
            kpis = page.inner_text("#kpis").lower()
            assert "active" in kpis and "effective support" in kpis

            # the drill-down: a top problem's visits (step, source, propensity, Û, rewards)
            page.click("#top-problems tbody tr:first-child")
            page.wait_for_selector("#problem-visits tbody tr")
            detail = page.inner_text("#problem-detail")
            assert "medium" in detail and "selected" in detail, detail
            first_visit = page.inner_text("#problem-visits tbody tr:first-child")
            assert first_visit.endswith("1 0 1 0") and "curator" in first_visit, first_visit
            assert "Û" in page.inner_text("#problem-visits thead")

            # compare both runs side by side
            page.check(f"input[aria-label='compare run {flat}']")
            page.check(f"input[aria-label='compare run {learn}']")
            page.wait_for_selector("#card-compare:not([hidden])")
            page.wait_for_selector("#chart-cmp-mass svg rect[data-series='medium']")
            assert "uniform-baseline" in page.text_content("#compare")
            for chart in ("cmp-reward", "cmp-reward-n", "cmp-zero", "cmp-entropy", "cmp-utility"):
                lines = page.locator(f"#chart-{chart} svg [data-series]").count()
                assert lines >= 2, f"compare chart {chart} drew {lines} series"
            assert "problems trained on" in page.inner_text("#chart-cmp-reward-n")
            assert "eval_accuracy" in page.inner_text("#cmp-metric-title")
            assert page.locator("#chart-cmp-metric svg [data-series]").count() >= 2
            assert "mean reward" in page.text_content("#compare")
            # both runs' statuses read from ticket ages (all applied, active: idle)
            statuses = page.eval_on_selector_all("#runs tbody .badge",
                                                 "bs => bs.map(b => b.textContent)")
            assert set(statuses) <= {"idle", "waiting", "training"}, statuses
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(shot), full_page=True)

            topic_run = _other_bank(server, 26)  # 28 runs in all: more than a page of 25

            # the token survives a reload in this tab's session; the choices sit in the URL
            page.reload()
            page.wait_for_selector("#chart-mass-time svg path[data-series]")
            assert page.is_hidden("#login")
            assert page.input_value("#run-picker") == str(learn)

            # the runs list: a page of the 25 newest, plus the shown and compared runs
            # (the two first ones) wherever they are; more on demand; a filter
            assert page.locator("#runs tbody tr").count() == 27
            assert page.is_visible("#runs-more")
            page.click("#runs-more")
            page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 28")
            assert page.is_hidden("#runs-more")
            page.fill("#runs-filter", "topic-1")  # topic-10 … topic-19: matches only
            page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 10")
            assert "10 of 28 runs match" in page.inner_text("#runs-count")
            page.fill("#runs-filter", "")

            # a run on a bank without `difficulty`: the group-by offers that bank's fields
            page.select_option("#run-picker", str(topic_run))
            page.wait_for_function("document.querySelector('#field-picker').value === 'topic'")
            options = page.eval_on_selector_all("#field-picker option",
                                                "os => os.map(o => o.value)")
            assert "difficulty" not in options and "topic" in options, options
            page.wait_for_selector("#chart-mass-time svg path[data-series='graphs']")
        finally:
            browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 20_000
    if os.environ.get("CURATOR_UPDATE_DOCS_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "admin-dashboard.png")

"""The TRL reasoning-gym benchmark's path (bench/trl_reasoning_gym.py), a few steps end to
end: reasoning-gym bank → a live service over HTTP → `CuratorGRPOTrainer` (log-ratios
on) on a warm-started GPT-2 built in code → greedy held-out evaluation. Checked against
what the service recorded (its Parquet export), not against what the trainer thinks it
sent."""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs `pip install trl` (extra [trl])")
pytest.importorskip("reasoning_gym", reason="needs reasoning-gym")

from tests.conftest import ADMIN  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "trl_reasoning_gym", ROOT / "bench" / "trl_reasoning_gym.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(curator_url: str, run_id: int):
    import httpx
    import pyarrow.parquet as pq

    resp = httpx.get(f"{curator_url}/v1/runs/{run_id}/export",
                     headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    resp.raise_for_status()
    return pq.read_table(io.BytesIO(resp.content)).to_pylist()


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["actor_curator"])  # sec runs the same path (suite time)
def test_trl_reasoning_gym_steps_report_rewards_with_log_ratios(admin, curator_url, arm,
                                                                 tmp_path, monkeypatch
                                                                 ) -> None:
    bench = _bench()
    monkeypatch.setattr(bench, "CACHE", tmp_path / "cache")
    steps, prompts, group = 3, 4, 4
    args = [f"--steps={steps}", f"--prompts={prompts}", f"--generations={group}",
            "--eval-every=2", "--heldout=2", "--warm-steps=10", "--n-embd=32",
            "--n-layer=1", "--n-head=2", "--cells=chain_sum:12/12/0,arc_1d:8/0/0,"
            "letter_counting:12/0/0"]
    ns = bench.build_parser().parse_args(args)
    cells = bench.parse_cells(ns.cells)
    tasks = [t for t, _ in cells]
    warm = bench.warm_start(ns, tasks, 0)
    assert warm.exists()
    bank = bench.make_banks(admin, [0], ns, cells)[0]
    train, held = bank["train"], bank["held"]
    assert len(train) == 44 and len(held) == 2 * 4
    assert sum(r["kind"] == "trap" for r in train) == round(0.1 * 44)

    out = bench.train_run(curator_url, None, bank["bank_id"], train, held, arm, 0, ns,
                          str(warm), progress=False, token=ADMIN)

    # the trainer side: one generation batch per optimizer step, held-out evaluated
    assert len(out["steps"]) == steps
    assert [e["step"] for e in out["evals"]] == [0, 2, 3]
    for ev in out["evals"]:
        assert 0.0 <= ev["acc"] <= 1.0 and set(ev["per_task"]) == set(tasks)
    assert out["tickets_reported"] == steps and out["service_calls"] >= 2 * steps

    # the service side: every prompt of every step has its group's rewards and
    # log-ratios, for exactly the problems the trainer generated for, in order
    rows = _export(curator_url, out["run_id"])
    reported = sorted({r["step"] for r in rows if r["rewards"] is not None})
    assert len(reported) == steps
    for k, step in enumerate(reported):
        got = sorted((r for r in rows if r["step"] == step), key=lambda r: r["rank"])
        trainer = out["steps"][k]
        assert [int(r["external_id"].removeprefix("row-")) for r in got] == trainer["indices"]
        assert [x for r in got for x in r["rewards"]] == pytest.approx(
            [x for g in trainer["rewards"] for x in g], abs=1e-6)
        for r in got:
            assert r["utility_kind"] == "ratio"
            assert len(r["log_ratios"]) == group
            assert all(math.isfinite(x) for x in r["log_ratios"])
    moved = max(abs(x) for r in rows if r["log_ratios"] for x in r["log_ratios"])
    assert moved > 0  # the policy was updated between sampling and π_new
    info = admin.get_run(out["run_id"])
    assert info.stats["utility_kinds"] == {"ratio": steps * prompts}
    assert "utility_fallback" not in info.stats
    if arm == "sec":
        assert info.params["field"] == "level"

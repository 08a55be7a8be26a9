"""Scenario families: `curator sim --scenario`, both engines, the family report and the
verdict against the issue's targets."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from curator.cli import main
from curator.sim.bank import BankConfig, make_bank
from curator.sim.cli import add_sim_parser, parse_scenarios
from curator.sim.family import TARGETS, scenario_rows, verdict
from curator.sim.runner import FAMILY_STRATEGIES, ORACLE, run_scenarios
from curator.sim.scenarios import SCENARIOS, Scenario
from curator.sim.student import StudentConfig
from curator.sim.trainer import TrainerConfig

VERDICT_KEYS = {"subject", "subject_ratio", "best_baseline", "best_baseline_ratio",
                "oracle_ratio", *TARGETS}


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_sim_parser(p.add_subparsers())
    return p.parse_args(["sim", *argv])


# -- command line ------------------------------------------------------------------------

def test_cli_parses_scenario_engine_and_jobs():
    args = _parse(["--scenario", "ring,traps", "--scenario", "chain", "--scenario", "ring",
                   "--engine", "http", "--jobs", "3"])
    assert args.engine == "http" and args.jobs == 3
    assert [s.name for s in parse_scenarios(args.scenario)] == ["ring", "traps", "chain"]
    assert [s.name for s in parse_scenarios(["all"])] == list(SCENARIOS)
    plain = _parse([])
    assert plain.scenario is None and plain.engine is None and plain.jobs == 2
    assert plain.steps is None and plain.strategies is None  # resolved per mode
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_scenarios(["ring,nope"])
    with pytest.raises(SystemExit):
        _parse(["--engine", "grpc"])
    assert ORACLE in FAMILY_STRATEGIES


@pytest.mark.parametrize("argv", [
    ["--scenario", "ring", "--problems", "100"],  # a scenario fixes its bank
    ["--scenario", "ring", "--student", "lr=0.5"],
    ["--scenario", "ring", "--engine", "direct", "--url", "http://x", "--token", "t"],
    ["--scenario", "ring", "--jobs", "0"],
    ["--engine", "http", "--strategies", "uniform,oracle"],  # oracle: direct only
])
def test_cli_rejects_conflicting_flags(argv, tmp_path, capsys):
    assert main(["sim", *argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert "curator sim:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# -- a tiny family, end to end -----------------------------------------------------------

def test_tiny_family_run_writes_the_reports(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["sim", "--scenario", "ring,traps", "--steps", "15", "--seeds", "2",
               "--strategies", "uniform,oracle,sec", "--engine", "direct", "--jobs", "1",
               "--batch-size", "32", "--pool-size", "128", "--out", str(out), "--quiet"])
    assert rc == 0
    for name in ("ring", "traps"):
        for f in ("sim.json", "sim.md", "sim.png"):
            assert (out / name / f).stat().st_size > 0
        per = json.loads((out / name / "sim.json").read_text())
        assert per["scenario"]["name"] == name and per["engine"] == "direct"
        assert per["trainer"]["steps"] == 15 and per["trainer"]["batch_size"] == 32
        assert per["student"] == SCENARIOS[name].student.to_dict()
        assert len(per["runs"]) == 6 and set(per["verdict"]) == VERDICT_KEYS
        assert "## Against uniform" in (out / name / "sim.md").read_text()
    for f in ("family.md", "family.json", "family.png"):
        assert (out / f).stat().st_size > 0
    fam = json.loads((out / "family.json").read_text())
    assert list(fam["scenarios"]) == ["ring", "traps"]
    for name, sc in fam["scenarios"].items():
        assert set(sc["verdict"]) == VERDICT_KEYS
        assert sc["verdict"]["best_baseline"] == "sec"
        assert all(sc["verdict"][k] is None for k in TARGETS)  # actor_curator not run
        rows = sc["rows"]
        assert list(rows) == ["uniform", "oracle", "sec"]
        assert rows["oracle"]["trap_share"] == 0.0
        assert len(rows["sec"]["ratio_per_seed"]) == 2
        assert rows["uniform"]["reaches_all"] and rows["uniform"]["ratio_to_uniform"] == 1.0
        assert ("unanswerable_share" in rows["sec"]) == (name == "traps")
    md = (out / "family.md").read_text()
    assert "## Verdict" in md and "| traps | oracle |" in md
    assert "family.md" in capsys.readouterr().out


def test_direct_engine_embeds_a_text_bank_once_and_caches_it(tmp_path):
    sc = Scenario(name="tiny-text", summary="test", embedder="hash",
                  bank=BankConfig(n_problems=400, n_heldout=100, text=True),
                  student=StudentConfig(lr=0.2))
    cfg = TrainerConfig(steps=3, batch_size=16, pool_size=64)
    res = run_scenarios([sc], ["uniform", "learnability"], [0], trainers={sc.name: cfg},
                        jobs=1, cache_dir=tmp_path, progress=False)[sc.name]
    (cached,) = tmp_path.glob("tiny-text-bank0-hash-*.npy")
    bank = make_bank(sc.bank, 0)
    np.testing.assert_array_equal(np.load(cached), sc.features(bank))
    assert [r["strategy"] for r in res["runs"]] == ["uniform", "learnability"]
    assert len(res["runs"][0]["accuracy"]) == 4


# -- the verdict on hand-made curves -----------------------------------------------------

STEPS = 10


def _curve(start: float, final: float, reach: int | None) -> list[float]:
    """Linear from `start`, at `final` from step `reach` on (then slowly higher); never
    reaching `final` when reach is None."""
    if reach is None:
        return [start] * (STEPS + 1)
    return [start + (final - start) * t / reach if t < reach else final + 0.001 * (t - reach)
            for t in range(STEPS + 1)]


def _result(reach: dict[str, list[int | None]], traps: dict[str, float],
            rising: tuple[str, ...] = ()) -> dict:
    """Two seeds; uniform goes 0.3→0.5 (seed 0) and 0.2→0.4 (seed 1) over 10 steps.
    Strategies in `rising` select noise at 0.05 rising to 0.20 over the run."""
    starts, finals = (0.3, 0.2), (0.5, 0.4)
    runs = []
    for name, per_seed in reach.items():
        for seed, k in enumerate(per_seed):
            acc = _curve(starts[seed], finals[seed], k)
            if name == "uniform":
                acc[-1] = finals[seed]
            noise = (np.linspace(0.05, 0.20, STEPS).tolist() if name in rising
                     else [traps.get(name, 0.1)] * STEPS)
            runs.append({"strategy": name, "seed": seed, "eval_steps": list(range(STEPS + 1)),
                         "accuracy": acc, "trap_share": noise,
                         "hard_share": [0.1] * STEPS, "no_signal_share": [0.4] * STEPS,
                         "unanswerable_share": [0.0] * STEPS, "seconds": 1.0})
    return {"strategies": list(reach), "seeds": [0, 1], "runs": runs,
            "bank": {"unanswerable_share": 0.0}}


BASE = {"uniform": [10, 10], "learnability": [7, 7], "sec": [8, 8], "pcl": [9, 9],
        "mopps": [9, 9]}


def test_verdict_passes_a_subject_faster_than_every_baseline():
    rows = scenario_rows(_result({**BASE, "actor_curator": [5, 5], "oracle": [4, 4]},
                                 {"actor_curator": 0.05}))
    assert rows["actor_curator"]["ratio_to_uniform"] == pytest.approx(0.5)
    assert rows["actor_curator"]["ratio_per_seed"] == [pytest.approx(0.5)] * 2
    assert rows["uniform"]["uniform_spread"] == pytest.approx(0.05)
    assert rows["actor_curator"]["worst_gap"] == pytest.approx(0.0)
    v = verdict(rows)
    assert v["best_baseline"] == "learnability" and v["best_baseline_ratio"] == pytest.approx(0.7)
    assert v["oracle_ratio"] == pytest.approx(0.4)  # (c): 0.5 ≤ 1.5 × 0.4
    assert {k: v[k] for k in TARGETS} == {"a": True, "b": True, "c": True, "d": True, "e": True,
                                          "f": True}
    assert rows["actor_curator"]["noise_share"] == pytest.approx(0.05)


def test_verdict_fails_a_subject_that_never_reaches_on_one_seed():
    rows = scenario_rows(_result({**BASE, "actor_curator": [5, None], "oracle": [3, 3]},
                                 {"actor_curator": 0.2}))
    ac = rows["actor_curator"]
    assert not ac["reaches_all"] and ac["reaches_count"] == 1
    assert ac["ratio_to_uniform"] is None  # the median seed never gets there
    assert ac["ratio_per_seed"] == [pytest.approx(0.5), None]
    assert ac["worst_gap"] == pytest.approx(0.5 * (0.505 + 0.2) - 0.45)  # at step 10
    assert ac["below_spread"]  # 0.0975 > uniform's spread 0.05
    v = verdict(rows)
    assert {k: v[k] for k in TARGETS} == {"a": False, "b": False, "c": False, "d": False,
                                          "e": False, "f": True}
    # fast, but its noise share rises from 0.05 to 0.20 (mean 0.125 > uniform 0.1)
    rising = scenario_rows(_result({**BASE, "actor_curator": [5, 5], "oracle": [4, 4]}, {},
                                   rising=("actor_curator",)))
    r = rising["actor_curator"]
    assert r["noise_share_first"] < 0.1 < r["noise_share_last"]
    v = verdict(rising)
    assert v["e"] is False and v["f"] is False and v["c"] is True


def test_verdict_oracle_bound_and_targets_that_do_not_apply():
    # 0.8× where the oracle needs 0.5×: beyond 1.5 × 0.5; slower than learnability: (d)
    rows = scenario_rows(_result({**BASE, "actor_curator": [8, 8], "oracle": [5, 5]}, {}))
    v = verdict(rows)
    assert v["c"] is False and v["d"] is False and v["a"] is True
    # a slow oracle (0.8×): never later than uniform is enough
    slow = scenario_rows(_result({**BASE, "actor_curator": [9, 9], "oracle": [8, 8]}, {}))
    assert verdict(slow)["c"] is True
    # no subject: nothing to judge; no oracle: (c) asks for ≤ 1× uniform
    assert all(verdict(rows, subject="nope")[k] is None for k in TARGETS)
    no_oracle = scenario_rows(_result({**BASE, "actor_curator": [5, 5]}, {}))
    assert verdict(no_oracle)["c"] is True and verdict(no_oracle)["d"] is True


# -- the HTTP engine on a scenario -------------------------------------------------------

@pytest.mark.slow
def test_http_engine_runs_a_provided_feature_scenario_like_the_direct_one(tmp_path, capsys):
    argv = ["sim", "--scenario", "traps", "--steps", "4", "--seeds", "1", "--batch-size", "32",
            "--pool-size", "128", "--strategies", "uniform,sec,oracle", "--quiet"]
    assert main([*argv, "--engine", "http", "--out", str(tmp_path / "http")]) == 0
    assert "dropped" in capsys.readouterr().err  # the oracle: direct engine only
    assert main([*argv, "--engine", "direct", "--jobs", "2",
                 "--out", str(tmp_path / "direct")]) == 0
    http = json.loads((tmp_path / "http" / "traps" / "sim.json").read_text())
    direct = json.loads((tmp_path / "direct" / "traps" / "sim.json").read_text())
    assert http["engine"] == "http" and http["strategies"] == ["uniform", "sec"]
    assert http["upload_seconds"] > 0
    assert (tmp_path / "http" / "family.md").exists()
    by = {r["strategy"]: r for r in direct["runs"]}
    for run in http["runs"]:  # same code, same streams, same scenario student
        assert run["accuracy"] == by[run["strategy"]]["accuracy"], run["strategy"]
        assert run["unanswerable_share"] == by[run["strategy"]]["unanswerable_share"]

"""One change at a time: actor_curator parameter variants against uniform on named
scenarios and seeds (direct engine), with the noise diagnostics beside the accuracy.

    python bench/curator_ablation.py --scenario traps,ring --seeds 100,101 \
        --variant shipped={} --variant signal='{"prior_shape": "signal", "prior": 4}'

Prints one Markdown row per scenario × variant: final accuracy, AUC, × uniform (median
over seeds of the steps to uniform's final for the same seed, over uniform's), noise
share selected (all steps / first quarter / last quarter; uniform's beside it), and the
mean Û of noise problems with signal ÷ that of useful problems with signal (as the
service computes Û). Used for the log in bench/curator_log.md; tune only on seeds the
family does not report (it reports 0–4).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curator.sim.report import steps_to  # noqa: E402
from curator.sim.runner import run_scenarios  # noqa: E402
from curator.sim.scenarios import get_scenario  # noqa: E402


def _steps_to(run: dict, target: float) -> float:
    """report.steps_to with "never" as +∞ (for the median)."""
    s = steps_to(run["eval_steps"], run["accuracy"], target)
    return math.inf if s is None else float(s)


def _mean(values: list) -> float:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else math.nan


def row(runs: list[dict], uniform: dict[int, dict]) -> dict:
    steps = [_steps_to(r, uniform[r["seed"]]["accuracy"][-1]) for r in runs]
    base = [_steps_to(uniform[r["seed"]], uniform[r["seed"]]["accuracy"][-1]) for r in runs]
    q = max(1, len(runs[0]["noise_share"]) // 4)
    un, uu = _mean(sum((r["utility_noise"] for r in runs), [])), \
        _mean(sum((r["utility_useful"] for r in runs), []))
    return {
        "final": float(np.mean([r["accuracy"][-1] for r in runs])),
        "auc": float(np.mean([np.mean(r["accuracy"]) for r in runs])),
        "ratio": float(np.median(steps) / np.median(base)),
        "reaches": sum(math.isfinite(s) for s in steps),
        "noise": float(np.mean([np.mean(r["noise_share"]) for r in runs])),
        "noise_first": float(np.mean([np.mean(r["noise_share"][:q]) for r in runs])),
        "noise_last": float(np.mean([np.mean(r["noise_share"][-q:]) for r in runs])),
        "u_ratio": un / uu if uu else math.nan,
        "seconds": float(np.mean([r["seconds"] for r in runs])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True, help="comma-separated scenario names")
    p.add_argument("--seeds", default="100,101", help="comma-separated seeds (tuning: 100+)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="actor_curator params for one variant (repeatable)")
    p.add_argument("--strategy", default="actor_curator", help="strategy the variants set")
    p.add_argument("--baselines", default="", help="comma-separated strategies to add as is")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--rewards-only", action="store_true")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", default=None, help="also write every row here")
    args = p.parse_args()
    from curator.sim.trainer import TrainerConfig

    scenarios = [get_scenario(n) for n in args.scenario.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [(v.partition("=")[0], json.loads(v.partition("=")[2] or "{}"))
                for v in args.variant] or [("shipped", {})]

    def trainers() -> dict:
        out = {}
        for sc in scenarios:
            d = sc.trainer_defaults()
            if args.steps:
                d["steps"] = args.steps
            out[sc.name] = TrainerConfig(rewards_only=args.rewards_only, **d)
        return out

    base = ["uniform"] + [b for b in args.baselines.split(",") if b]
    ref = run_scenarios(scenarios, base, seeds, trainers=trainers(), jobs=args.jobs,
                        progress=False, cache_dir="artifacts/sim/cache")
    results: dict[str, dict[str, dict]] = {sc.name: {} for sc in scenarios}
    for name, res in ref.items():
        uni = {r["seed"]: r for r in res["runs"] if r["strategy"] == "uniform"}
        for b in base:
            results[name][b] = row([r for r in res["runs"] if r["strategy"] == b], uni)
    for vname, params in variants:
        out = run_scenarios(scenarios, [args.strategy], seeds, trainers=trainers(),
                            params={args.strategy: params}, jobs=args.jobs, progress=False,
                            cache_dir="artifacts/sim/cache")
        for name, res in out.items():
            uni = {r["seed"]: r for r in ref[name]["runs"] if r["strategy"] == "uniform"}
            results[name][vname] = row(res["runs"], uni)
        print(f"# done: {vname}", file=sys.stderr, flush=True)
    print("| scenario | variant | final | AUC | × uniform | reaches | noise share (all / "
          "first ¼ / last ¼) | Û noise ÷ useful | s/run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for vname, r in rows.items():
            ratio = f"{r['ratio']:.2f}" if math.isfinite(r["ratio"]) else "never"
            print(f"| {name} | {vname} | {r['final']:.3f} | {r['auc']:.3f} | {ratio} "
                  f"| {r['reaches']}/{len(seeds)} | {r['noise']:.3f} / {r['noise_first']:.3f}"
                  f" / {r['noise_last']:.3f} | {r['u_ratio']:.2f} | {r['seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

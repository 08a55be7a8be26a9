"""Warm start (`init_from`) in the simulator: does a curator trained on one student help a
fresh one on the same bank?

Per scenario: one `actor_curator` run on a source seed (a tuning seed, 100) trains the
curator; then, on held-out student seeds (0–4, the same bank), `uniform`, a cold
`actor_curator` and a warm one (the source's scorer and pass-rate head, no dormant
period, as the service's `init_from` does) each run the scenario's steps. Reported per
seed: steps to reach uniform's final held-out accuracy, and final accuracy; direct engine.

    python bench/warm_start.py [--scenarios ring,forgetting] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))
SOURCE_SEED = 100


def _run(scenario: str, strategy: str, seed: int, warm: dict | None,
         keep: bool = False) -> tuple[dict, dict | None]:
    import torch

    from curator.sim.direct import simulate_run_direct
    from curator.sim.scenarios import get_scenario
    from curator.sim.trainer import TrainerConfig

    torch.set_num_threads(1)
    sc = get_scenario(scenario)
    bank = sc.make_bank(0)
    features = sc.features(bank)
    params = {"dormant_steps": 0} if warm is not None else {}
    kept: list = []
    rec = simulate_run_direct(bank, features, strategy, seed=seed, params=params,
                              trainer=TrainerConfig(steps=sc.steps), student=sc.student,
                              warm=warm, keep=kept)
    state = kept[0].warm_state() if keep and kept and kept[0] is not None else None
    return {"eval_steps": rec.eval_steps, "accuracy": rec.accuracy}, state


def _steps_to(rec: dict, target: float) -> int | None:
    for s, a in zip(rec["eval_steps"], rec["accuracy"]):
        if a >= target:
            return int(s)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", default="ring,forgetting")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "warm_start.md"))
    args = ap.parse_args()
    t0 = time.time()
    lines = ["# Warm start (`init_from`) in the simulator (`bench/warm_start.py`)", "",
             f"`python bench/warm_start.py --scenarios {args.scenarios} --seeds {args.seeds}`",
             "", f"Source: one `actor_curator` run on student seed {SOURCE_SEED}; targets: "
             f"held-out seeds 0–{args.seeds - 1}, same bank, direct engine. Steps to "
             "uniform's final held-out accuracy on the same seed (— never), and the final "
             "accuracy.", ""]
    seeds = list(range(args.seeds))
    with ProcessPoolExecutor(args.jobs) as pool:
        for scenario in args.scenarios.split(","):
            print(f"{scenario}: training the source curator", flush=True)
            _, warm = pool.submit(_run, scenario, "actor_curator", SOURCE_SEED, None,
                                  True).result()
            jobs = {(name, s): pool.submit(_run, scenario, strategy, s, w)
                    for name, strategy, w in [("uniform", "uniform", None),
                                              ("cold", "actor_curator", None),
                                              ("warm", "actor_curator", warm)]
                    for s in seeds}
            res = {k: f.result()[0] for k, f in jobs.items()}
            print(f"{scenario}: done", flush=True)
            lines += [f"## {scenario}", "",
                      "| seed | uniform final | cold: steps to it | cold final | "
                      "warm: steps to it | warm final |", "|---|---|---|---|---|---|"]
            summary = {"cold": [], "warm": []}
            for s in seeds:
                target = res[("uniform", s)]["accuracy"][-1]
                row = [str(s), f"{target:.3f}"]
                for name in ("cold", "warm"):
                    rec = res[(name, s)]
                    steps = _steps_to(rec, target)
                    summary[name].append((steps, rec["accuracy"][-1]))
                    row += ["—" if steps is None else str(steps), f"{rec['accuracy'][-1]:.3f}"]
                lines.append("| " + " | ".join(row) + " |")
            for name in ("cold", "warm"):
                st = [x for x, _ in summary[name]]
                reached = [x for x in st if x is not None]
                lines.append("")
                lines.append(f"{name}: reaches uniform's final on {len(reached)}/{len(st)} "
                             f"seeds, median steps "
                             f"{statistics.median(reached) if reached else '—'}, mean final "
                             f"{statistics.mean(a for _, a in summary[name]):.3f}")
            lines.append("")
    lines.append(f"Wall time {(time.time() - t0) / 60:.1f} min.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

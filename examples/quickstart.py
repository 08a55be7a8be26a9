"""A complete trainer loop against a running Curator (`make run`), with fake rollouts.

    python examples/quickstart.py --url http://127.0.0.1:8000 --token "$(cat data/admin_token)"

Replace `fake_rollouts` with your generation + reward and `log_ratios` with the
per-rollout mean token log-ratio your actor update produced.
"""

from __future__ import annotations

import argparse
import random

from curator_client import Client


def fake_rollouts(problem, group_size: int) -> tuple[list[float], list[float]]:
    # Easier problems (lower difficulty) are solved more often; stands in for the policy.
    p_solve = max(0.05, 1.0 - 0.2 * int(problem.metadata.get("difficulty", 3)))
    rewards = [float(random.random() < p_solve) for _ in range(group_size)]
    log_ratios = [random.gauss(0.0, 0.02) for _ in range(group_size)]
    return rewards, log_ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", required=True, help="the admin token printed by `make run`")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--strategy", default="actor_curator")
    args = ap.parse_args()

    with Client(args.url, token=args.token) as c:
        bank = next(b for b in c.list_banks() if b.name == "demo")
        run = c.create_run(bank.bank_id, strategy=args.strategy, seed=0)
        for batch in run.batches(batch_size=64, steps=args.steps):
            results = []
            for p in batch.problems:
                rewards, log_ratios = fake_rollouts(p, group_size=8)
                results.append({"problem_id": p.problem_id, "rewards": rewards,
                                "log_ratios": log_ratios})
            receipt = batch.report(results)
            print(f"step {batch.step:3d}  model v{batch.model_version:<3d} "
                  f"curator share {sum(p.source == 'curator' for p in batch.problems) / 64:.2f}"
                  f"  accepted {receipt.accepted}")
        print(run.info())


if __name__ == "__main__":
    main()

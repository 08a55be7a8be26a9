"""A complete trainer loop against a running Curator (`make run`), with fake rollouts.

    python examples/quickstart.py --url http://127.0.0.1:8000 --token "$(cat data/admin_token)"

Replace `fake_rollouts` with your generation + reward and `log_ratios` with the
per-rollout mean token log-ratio your actor update produced.
"""

from __future__ import annotations

import argparse
import random
import time

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
        print(f"run {run.run_id} ({args.strategy}): the first batches are drawn uniformly — "
              "the curator is dormant for its first updates (dormant_steps, 5 by default) "
              "and a select sees only the updates applied before it")
        took_over = False
        for batch in run.batches(batch_size=64, steps=args.steps):
            results = []
            for p in batch.problems:
                rewards, log_ratios = fake_rollouts(p, group_size=8)
                results.append({"problem_id": p.problem_id, "rewards": rewards,
                                "log_ratios": log_ratios})
            receipt = batch.report(results)
            # A trainer's generation and update take seconds, so its next select sees this
            # feedback applied; fake rollouts take none, so wait for the worker here.
            wait_until = time.monotonic() + 10
            while run.info().tickets.applied < batch.step and time.monotonic() < wait_until:
                time.sleep(0.05)
            share = sum(p.source == "curator" for p in batch.problems) / len(batch)
            if share > 0 and not took_over:
                took_over = True
                print(f"-- step {batch.step}: the curator takes over (model "
                      f"v{batch.model_version}); the rest of each batch is uniform "
                      "'explore' picks, the in-run control group")
            print(f"step {batch.step:3d}  model v{batch.model_version:<3d} "
                  f"curator share {share:.2f}  accepted {receipt.accepted}")
        info = run.info()  # wait for the worker to apply the last feedback
        deadline = time.monotonic() + 30
        while info.tickets.applied + info.tickets.failed < info.tickets.reported \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            info = run.info()
        print(f"\n{info.tickets.applied} of {info.tickets.reported} reported batches applied; "
              f"curator at v{info.model_version}")
        m = run.metrics()
        if "curator/utility_difference" in m:
            print(f"in-run control: curator − explore utility "
                  f"{m['curator/utility_difference']:+.4f}, zero-signal share "
                  f"{m.get('curator/curator_zero_signal', float('nan')):.2f} (curator) vs "
                  f"{m.get('curator/explore_zero_signal', float('nan')):.2f} (explore)")


if __name__ == "__main__":
    main()

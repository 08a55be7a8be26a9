"""A custom PyTorch training loop whose prompts come from Curator (`make run` first).

    python examples/torch_loop.py --url http://127.0.0.1:8000 --token "$(cat data/admin_token)"

The "policy" is a stand-in small enough to run anywhere: one logit per problem for "solve
it", trained by a GRPO-style policy gradient. What carries over to a real model is the
plumbing: a bank built from the dataset (`add_dataset`, row i ↔ "row-{i}"), a
`CuratorBatchSampler` in the `DataLoader`, and `sampler.feedback(indices, rewards,
log_ratios)` after each update, with log-ratios from the policy before and after it.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from curator_client import Client
from curator_client.integrations.datasets import add_dataset
from curator_client.integrations.torch import CuratorBatchSampler, IndexedDataset


def make_dataset(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        a, b = torch.randint(0, 100, (2,), generator=g).tolist()
        rows.append({"prompt": f"What is {a} + {b}?", "answer": str(a + b),
                     "difficulty": round((a + b) / 50.0 - 2.0, 2)})
    return rows


def collate(rows: list[dict]) -> dict:
    return {"index": torch.tensor([r["index"] for r in rows]),
            "difficulty": torch.tensor([r["difficulty"] for r in rows])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", required=True, help="the admin token printed by `make run`")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--group", type=int, default=8, help="rollouts per prompt (G)")
    ap.add_argument("--strategy", default="actor_curator")
    args = ap.parse_args()

    rows = make_dataset(2000)
    with Client(args.url, token=args.token) as client:
        bank = next((b for b in client.list_banks() if b.name == "torch-loop-example"),
                    None) or client.create_bank("torch-loop-example")
        added, _ = add_dataset(client, bank.bank_id, rows, metadata_fields=["difficulty"])
        print(f"bank {bank.bank_id}: {added.added} added, {len(added.duplicates)} already there")
        run = client.create_run(bank.bank_id, strategy=args.strategy, seed=0)

        sampler = CuratorBatchSampler(run, rows, batch_size=args.batch_size, steps=args.steps)
        loader = DataLoader(IndexedDataset(rows), batch_sampler=sampler, collate_fn=collate)
        skill = torch.zeros(len(rows), requires_grad=True)  # the policy's parameters
        optim = torch.optim.SGD([skill], lr=0.5)

        for step, batch in enumerate(loader):
            idx = batch["index"]
            p_old = torch.sigmoid(skill[idx] - batch["difficulty"]).detach()  # P(solve)
            solved = torch.bernoulli(p_old[:, None].expand(-1, args.group))  # [B, G]
            rewards = solved
            adv = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True)
                                                               + 1e-6)
            p = torch.sigmoid(skill[idx] - batch["difficulty"])[:, None]
            logp = torch.where(solved.bool(), p.log(), (1 - p).log())
            optim.zero_grad()
            (-(adv * logp).mean()).backward()
            optim.step()
            with torch.no_grad():  # log π_new(y) − log π_old(y) of each sampled rollout
                p_new = torch.sigmoid(skill[idx] - batch["difficulty"])[:, None]
                p_o = p_old[:, None]
                log_ratios = torch.where(solved.bool(), (p_new / p_o).log(),
                                         ((1 - p_new) / (1 - p_o)).log())
            receipts = sampler.feedback(idx, rewards, log_ratios)
            print(f"step {step:3d}  mean reward {rewards.mean():.3f}  "
                  f"reported {[r.accepted for r in receipts]}")
        print(run.info())


if __name__ == "__main__":
    main()

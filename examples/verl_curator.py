"""verl with Curator choosing each step's prompts: prepare the data, bank and run, then
print the `verl.trainer.main_ppo` command that plugs the sampler in.

    python examples/verl_curator.py --url http://127.0.0.1:8000 --token "$(cat data/admin_token)"

It writes train/test parquet files in verl's format (chat `prompt`, `reward_model.
ground_truth`, `extra_info.index`), adds the train rows to a bank whose external ids are
`extra_info.index` (the field the sampler reads back from each batch), creates a run and
prints the overrides. Needs verl 0.5 – 0.7.x (the releases with `data.sampler`) and GPUs to
run the printed command; this script itself needs only pyarrow.
"""

from __future__ import annotations

import argparse
import random
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curator_client import Client
from curator_client.integrations.datasets import add_dataset


def verl_rows(n: int, split: str, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rnd.randint(0, 999), rnd.randint(0, 999)
        rows.append({
            "data_source": "arithmetic",
            "prompt": [{"role": "user", "content": f"What is {a} + {b}? Answer with the "
                        "number after '####'."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i},
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", required=True, help="the admin token printed by `make run`")
    ap.add_argument("--out", default="/tmp/curator-verl", help="where the parquet files go")
    ap.add_argument("--strategy", default="actor_curator")
    ap.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = verl_rows(4096, "train", seed=0)
    pq.write_table(pa.Table.from_pylist(train), out / "train.parquet")
    pq.write_table(pa.Table.from_pylist(verl_rows(256, "test", seed=1)), out / "test.parquet")

    with Client(args.url, token=args.token) as client:
        bank = next((b for b in client.list_banks() if b.name == "verl-arithmetic"),
                    None) or client.create_bank("verl-arithmetic")
        result, _ = add_dataset(client, bank.bank_id, out / "train.parquet",
                                id_field="extra_info.index",
                                answer_field="reward_model.ground_truth",
                                metadata_fields=["data_source", "ability"])
        print(f"bank {bank.bank_id}: {result.added} added, {len(result.duplicates)} already there")
        run = client.create_run(bank.bank_id, strategy=args.strategy, seed=0)

    overrides = [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={out / 'train.parquet'}",
        f"data.val_files={out / 'test.parquet'}",
        "data.train_batch_size=256",
        "data.max_prompt_length=128",
        "data.max_response_length=256",
        "data.dataloader_num_workers=0",
        "data.sampler.class_path=pkg://curator_client.integrations.verl",
        "data.sampler.class_name=CuratorCurriculumSampler",
        f"+data.sampler.curator.url={args.url}",
        f"+data.sampler.curator.run_id={run.run_id}",
        # the updated actor's log-probs after each update: log-ratios for Û = mean A·s
        # (one extra forward pass per step); without it only rewards are sent
        "+data.sampler.curator.post_update_log_probs=true",
        f"actor_rollout_ref.model.path={args.model}",
        "actor_rollout_ref.rollout.n=8",
        "trainer.n_gpus_per_node=1",
        "trainer.total_epochs=1",
    ]
    print("\nThe run token stays out of verl's (logged) config:")
    print(f"export CURATOR_RUN_TOKEN={shlex.quote(run.token or '')}")
    print("python -m verl.trainer.main_ppo \\\n    " + " \\\n    ".join(overrides))


if __name__ == "__main__":
    main()

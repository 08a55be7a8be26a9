"""TRL's GRPOTrainer drawing its prompts from Curator (`make run` first; `pip install trl`).

    python examples/trl_grpo.py --url http://127.0.0.1:8000 --token "$(cat data/admin_token)"
    python examples/trl_grpo.py ... --model Qwen/Qwen2.5-0.5B-Instruct   # a real model

Without `--model` it trains a tiny randomly initialised GPT-2 with a character tokenizer,
both built here (no download), on the CPU: the point is the wiring, not the accuracy.
The only Curator-specific lines are `add_dataset` (bank row i ↔ dataset row i) and
`CuratorGRPOTrainer(..., curator_run=run)`; the trainer reports each prompt's group
rewards after every optimizer step.
"""

from __future__ import annotations

import argparse
import random

from datasets import Dataset
from trl import GRPOConfig

from curator_client import Client
from curator_client.integrations.datasets import add_dataset
from curator_client.integrations.trl import CuratorGRPOTrainer


def tiny_model():
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in "0123456789+-*=?. abcdefghijklmnopqrstuvwxyzW":
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # a token per char
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        eos_token="<eos>", unk_token="<unk>")
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return GPT2LMHeadModel(config), tokenizer


def arithmetic(n: int, seed: int = 0) -> Dataset:
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rnd.randint(0, 49), rnd.randint(0, 49)
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b), "digits": len(str(a + b))})
    return Dataset.from_list(rows)


def reward_exact(completions, answer, **kwargs):
    """1 for the right sum; a little for emitting digits at all (a dense start signal)."""
    return [float(c.strip().startswith(a)) + 0.1 * sum(ch.isdigit() for ch in c[:3])
            for c, a in zip(completions, answer)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", required=True, help="the admin token printed by `make run`")
    ap.add_argument("--model", default=None, help="a Hugging Face model id or path")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--strategy", default="actor_curator")
    ap.add_argument("--output-dir", default="/tmp/curator-trl-example")
    args = ap.parse_args()

    dataset = arithmetic(500)
    with Client(args.url, token=args.token) as client:
        bank = next((b for b in client.list_banks() if b.name == "trl-arithmetic"),
                    None) or client.create_bank("trl-arithmetic")
        add_dataset(client, bank.bank_id, dataset, metadata_fields=["digits"])
        run = client.create_run(bank.bank_id, strategy=args.strategy, seed=0)

        if args.model:
            model, tokenizer = args.model, None
        else:
            model, tokenizer = tiny_model()
        config = GRPOConfig(
            output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=8,
            gradient_accumulation_steps=2, num_generations=4, max_completion_length=8,
            learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
            gradient_checkpointing=False, use_cpu=args.model is None)
        trainer = CuratorGRPOTrainer(model=model, reward_funcs=reward_exact, args=config,
                                     train_dataset=dataset, processing_class=tokenizer,
                                     curator_run=run)
        trainer.train()
        print("receipts:", [(r.ticket_id[:8], r.accepted)
                            for r in trainer.curator_callback.receipts])
        print(run.info())


if __name__ == "__main__":
    main()

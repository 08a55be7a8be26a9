"""Small shared helpers for the integration tests."""

from __future__ import annotations

import time


def arith_rows(n: int, *, offset: int = 0) -> list[dict]:
    """`n` addition problems with a difficulty level, as dataset rows."""
    rows = []
    for i in range(offset, offset + n):
        a, b = i % 10, (i * 7) % 10
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b), "level": (a + b) // 5,
                     "uid": f"q{i}"})
    return rows


def wait_applied(run, n: int, timeout: float = 60.0):
    """Poll the run until `n` of its tickets are applied by the worker; its info."""
    deadline = time.monotonic() + timeout
    info = run.info()
    while info.tickets.applied < n and time.monotonic() < deadline:
        time.sleep(0.1)
        info = run.info()
    assert info.tickets.applied >= n, f"only {info.tickets.applied}/{n} tickets applied: {info}"
    return info


def tiny_causal_lm(seed: int = 0):
    """A randomly initialised 2-layer GPT-2 and a character-level tokenizer built in code
    (no download): enough for GRPO's generate → score → update loop on a CPU."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in "0123456789+-*=?. abcdefghijklmnopqrstuvwxyzW":
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one token per char
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        eos_token="<eos>", unk_token="<unk>")
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return GPT2LMHeadModel(config), tokenizer

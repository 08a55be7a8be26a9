"""A tiny causal character-level transformer for the gym student (sim/gym.py).

Imported only inside `GymStudentConfig.build` (torch is heavy; the scenario list must
stay light). Everything here is plain torch on the CPU:

* `CharVocab`: PAD, BOS, EOS and a small fixed character set (digits, lower-case
  letters, a few symbols); anything else maps to '?'.
* `TinyLM`: pre-LayerNorm GPT blocks with learned absolute positions and a tied output
  head. `forward(tokens, pos, key_ok, past)` runs a block of new tokens against an
  optional KV cache, so one function serves prefill, one-token decoding and the
  teacher-forced training pass.
* `prefill` / `sample` / `greedy`: left-padded prompts are run once per problem; the
  cache is then repeated G times (a group shares its prompt), and completions are
  decoded token by token with the cache.
* `completion_logprobs`: the same computation teacher-forced (the prompt once per
  problem, with gradient), giving per-token log π of given completions — what the GRPO
  step and the log-ratio pass use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS = 0, 1, 2
CHARS = "0123456789abcdefghijklmnopqrstuvwxyz -+=>;:|?"


class CharVocab:
    def __init__(self, chars: str = CHARS) -> None:
        self.chars = chars
        self.index = {c: i + 3 for i, c in enumerate(chars)}
        self.unknown = self.index["?"]

    def __len__(self) -> int:
        return len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, self.unknown) for c in text]

    def decode(self, ids: list[int]) -> str:
        out = []
        for t in ids:
            if t == EOS:
                break
            if t >= 3:
                out.append(self.chars[t - 3])
        return "".join(out)


class Block(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None):
        b, t, d = x.shape
        h = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, t, h, d // h).transpose(1, 2)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, (k, v)


class TinyLM(nn.Module):
    def __init__(self, vocab_size: int, d: int, n_layer: int, n_head: int,
                 max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.apply(self._init)
        for blk in self.blocks:  # GPT-2 style scaled residual projections
            nn.init.normal_(blk.proj.weight, std=0.02 / math.sqrt(2 * n_layer))
            nn.init.normal_(blk.out.weight, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, key_ok: torch.Tensor,
                past: list | None = None):
        """tokens, pos [B, T]; key_ok [B, S_past + T] (False: a padding key). New tokens
        attend causally to each other and to every valid cached key. Returns logits
        [B, T, V] and the new cache (per layer (k, v) [B, H, S_past + T, dh])."""
        b, t = tokens.shape
        s_past = 0 if past is None else past[0][0].shape[2]
        causal = torch.ones(t, s_past + t, dtype=torch.bool, device=tokens.device)
        causal[:, s_past:] = torch.tril(causal[:, s_past:])
        mask = causal[None] & key_ok[:, None, :]
        # a padding query with no valid key would give NaN: let it see itself
        eye = torch.zeros(t, s_past + t, dtype=torch.bool, device=tokens.device)
        eye[:, s_past:] = torch.eye(t, dtype=torch.bool, device=tokens.device)
        mask = (mask | eye[None])[:, None]
        x = self.tok(tokens) + self.pos(pos.clamp(0, self.max_len - 1))
        cache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, mask, None if past is None else past[i])
            cache.append(kv)
        logits = self.ln_f(x) @ self.tok.weight.T
        return logits, cache


def pad_prompts(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token lists: tokens [B, L], positions [B, L] (0 at the first real token),
    key_ok [B, L] and the prompt lengths are implied by key_ok.sum(1)."""
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), PAD, dtype=torch.long)
    ok = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        ok[i, width - len(p):] = True
    pos = (ok.long().cumsum(1) - 1).clamp(min=0)
    return tokens, pos, ok


def prefill(model: TinyLM, prompts: list[list[int]]):
    """Run the prompts once: (last logits [B, V], cache, key_ok [B, L], lengths [B])."""
    tokens, pos, ok = pad_prompts(prompts)
    logits, cache = model(tokens, pos, ok)
    return logits[:, -1], cache, ok, ok.sum(1)


def _repeat(cache: list, g: int) -> list:
    return [(k.repeat_interleave(g, 0), v.repeat_interleave(g, 0)) for k, v in cache]


@torch.no_grad()
def sample(model: TinyLM, prompts: list[list[int]], g: int, max_new: int,
           gen: torch.Generator | None, greedy: bool = False):
    """G completions per prompt at temperature 1 (or greedy). Returns completion tokens
    [B·G, T] (EOS included, PAD after it), per-token log π [B·G, T] and a validity mask
    [B·G, T] (tokens up to and including EOS, or all T if no EOS was produced)."""
    last, cache, ok, lengths = prefill(model, prompts)
    last = last.repeat_interleave(g, 0)
    cache = _repeat(cache, g)
    ok = ok.repeat_interleave(g, 0)
    lengths = lengths.repeat_interleave(g, 0)
    n = last.shape[0]
    toks = torch.full((n, max_new), PAD, dtype=torch.long)
    logps = torch.zeros((n, max_new))
    valid = torch.zeros((n, max_new), dtype=torch.bool)
    done = torch.zeros(n, dtype=torch.bool)
    logits = last
    for t in range(max_new):
        lp = torch.log_softmax(logits.float(), dim=-1)
        if greedy:
            nxt = lp.argmax(-1)
        else:
            nxt = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1)
        live = ~done
        toks[live, t] = nxt[live]
        logps[live, t] = lp[live].gather(1, nxt[live, None]).squeeze(1)
        valid[live, t] = True
        done = done | (nxt == EOS)
        if bool(done.all()) or t == max_new - 1:
            break
        ok = torch.cat([ok, torch.ones((n, 1), dtype=torch.bool)], dim=1)
        step_logits, cache = model(toks[:, t:t + 1], (lengths + t)[:, None], ok, cache)
        logits = step_logits[:, -1]
    return toks, logps, valid


def completion_logprobs(model: TinyLM, prompts: list[list[int]], g: int,
                        toks: torch.Tensor) -> torch.Tensor:
    """Teacher-forced per-token log π of completions `toks` [B·G, T] (G per prompt, in
    the order `sample` returns them) under `model`; differentiable. [B·G, T]."""
    last, cache, ok, lengths = prefill(model, prompts)
    last = last.repeat_interleave(g, 0)
    cache = _repeat(cache, g)
    ok = ok.repeat_interleave(g, 0)
    lengths = lengths.repeat_interleave(g, 0)
    n, t = toks.shape
    if t > 1:
        inp = toks[:, :-1]
        pos = lengths[:, None] + torch.arange(t - 1)[None]
        key_ok = torch.cat([ok, torch.ones((n, t - 1), dtype=torch.bool)], dim=1)
        rest, _ = model(inp, pos, key_ok, cache)
        logits = torch.cat([last[:, None], rest], dim=1)
    else:
        logits = last[:, None]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp.gather(2, toks[:, :, None]).squeeze(2)


def supervised_loss(model: TinyLM, prompts: list[list[int]],
                    answers: list[list[int]]) -> torch.Tensor:
    """Mean cross-entropy of answer tokens (answer + EOS) given the prompts."""
    width = max(len(a) for a in answers) + 1
    toks = torch.full((len(answers), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(answers), width), dtype=torch.bool)
    for i, a in enumerate(answers):
        seq = a + [EOS]
        toks[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, :len(seq)] = True
    lp = completion_logprobs(model, prompts, 1, toks)
    return -(lp * mask).sum() / mask.sum()

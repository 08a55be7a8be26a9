"""Synthetic problem bank for the simulator (docs/design.md §5).

A bank is N problems in K skills. Every problem has a skill k, a true difficulty d (on
the same logit scale as the student's abilities), a kind, and a feature vector that the
service receives as a provided embedding.

Kinds
-----
normal  d ~ N(difficulty_mean, difficulty_std²). P(solve) = σ(ability[k] − d).
trap    reward is a coin flip whatever the policy (a noisy or unverifiable answer key).
        A trap has a nominal difficulty drawn like a normal problem's and its features
        and metadata are made exactly as a normal problem's would be: nothing in what a
        strategy can see separates it from an ordinary problem of its skill.
hard    far beyond reach: d = difficulty_mean + hard_offset_std·difficulty_std + U(0, 2)
        (default ≥ 4 std above the mean, i.e. ~11 logits above the initial abilities:
        P(solve) < 1e-4 at the start and still ~1e-3 after a long run).
unanswerable (`unanswerable_share`, default 0) reward always 0: a wrong answer key. Its
        nominal difficulty is moderate, d ~ N(difficulty_mean,
        (unanswerable_spread·σ_d)²), and its features, difficulty label and prompt are
        made exactly as a normal problem of that difficulty's would be: it looks like
        an ordinary, promising problem of its skill, and only never pays. Unlike a trap
        it has no signal at all (a group of all-zero rewards), so it wastes a slot
        rather than teaching noise; a feature-based predictor cannot see it, a
        per-problem pass-rate tracker can after a visit or two.

Features (dim 64 by default), L2-normalised:

    x = c_k + feature_difficulty · tanh((d + ε_p − μ_d) / (2σ_d)) · u + noise

* c_k: unit skill centres made by a random walk (c_{k+1} = ρ·c_k + √(1−ρ²)·fresh,
  ρ = skill_relatedness), so neighbouring skills — the ones the student transfers
  between — are also neighbours in feature space, as related topics are in a real
  embedding.
* u: one shared unit "difficulty direction". The embedding knows difficulty only
  partly: ε_p ~ N(0, (perceived_difficulty_noise·σ_d)²) blurs it (default 0.75·σ_d, so
  the best linear read-out of d from the features explains ~60% of its variance; real
  prompt embeddings predict pass rates only moderately), and tanh saturates, so a
  far-too-hard problem looks like a very hard normal one, not like a different kind.
* noise ~ N(0, feature_noise²/dim · I): per-problem idiosyncrasy (‖noise‖ ≈ 0.8, about
  as large as the skill signal, as in real sentence embeddings).

Metadata (visible to strategies; the service only ever reads `difficulty`, and only for
`sec`): `skill` ("s0".."s{K-1}"), `difficulty` — a bucket label "1".."5" from a *noisy*
human-style rating (d + N(0, (label_noise·σ_d)²), cut at the normal-difficulty
quantiles; hard problems are rated "5") so `sec` has categories of the quality real
datasets' difficulty levels have — and `kind` (normal|trap|hard) so the dashboard can
show where the mass went. No built-in strategy reads `kind`; the simulator keeps its own
ground truth and never reads metadata back.

The held-out evaluation set is drawn from the same distribution without traps (a coin
flip cannot be evaluated) or unanswerable problems: normal and hard problems in the same
proportion as in the bank.

Text banks (`text=True`): every training problem gets a prompt rendered from templates
(text.py: skills share surface forms, difficulty shows partly through digits and steps)
and no provided embedding; the ground truth (skill, difficulty, kind, label) is drawn
exactly as for a provided bank with the same seed. `features` is then empty (width 0)
until `embed_bank(bank, "hash" | "minilm")` fills it with the vectors the server's own
embedder (curator.bank.embed) computes for those prompts. `problems()` yields
{"external_id", "prompt", "answer", "metadata"} without "embedding" for a text bank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KINDS = ("normal", "trap", "hard", "unanswerable", "wrong_key")
NORMAL, TRAP, HARD, UNANSWERABLE, WRONG_KEY = 0, 1, 2, 3, 4
# problems whose reward says nothing true about the answer: a coin-flip verifier, a
# reference answer that no answer matches, a fixed wrong answer that is rewarded
# (`wrong_key`: only real-policy students have one, see policy.py)
NOISE_KINDS = (TRAP, UNANSWERABLE, WRONG_KEY)
EMBED_BATCH = 512  # texts per embedder call in embed_bank
PROGRESS_MIN = 5_000  # show a progress bar when embedding at least this many prompts


@dataclass(frozen=True)
class BankConfig:
    n_problems: int = 20_000
    n_skills: int = 8
    dim: int = 64
    trap_share: float = 0.10
    hard_share: float = 0.10
    n_heldout: int = 2_000
    difficulty_mean: float = 1.0
    difficulty_std: float = 2.5
    hard_offset_std: float = 4.0  # hard problems sit this many σ_d above the mean (plus U(0,2))
    n_buckets: int = 5
    skill_relatedness: float = 0.5  # ρ of the random walk between consecutive skill centres
    feature_difficulty: float = 0.6  # length of the difficulty component
    perceived_difficulty_noise: float = 0.75  # in units of σ_d
    label_noise: float = 0.5  # noise of the `difficulty` metadata rating, in units of σ_d
    feature_noise: float = 0.8  # expected norm of the per-problem noise
    unanswerable_share: float = 0.0  # reward always 0, looks like a moderate normal problem
    unanswerable_spread: float = 0.5  # σ of their nominal difficulty, in units of σ_d
    text: bool = False  # render prompts (text.py) instead of providing embeddings
    # share of the traps that come from one noisy source (a scraped set with a broken
    # verifier): their features sit around a centre of their own instead of their
    # skill's, so a predictor over the embedding can find the cluster, and its pass
    # rate is 0.5 forever
    trap_source: float = 0.0

    def validate(self) -> None:
        if self.n_problems < 1 or self.n_skills < 1 or self.dim < 2:
            raise ValueError("n_problems, n_skills must be ≥ 1 and dim ≥ 2")
        shares = (self.trap_share, self.hard_share, self.unanswerable_share)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError(
                "trap_share, hard_share and unanswerable_share must be ≥ 0 and sum to < 1")
        if self.unanswerable_spread < 0:
            raise ValueError("unanswerable_spread must be ≥ 0")
        if not 0 <= self.trap_source <= 1 or (self.trap_source and self.text):
            raise ValueError("trap_source must be in [0, 1] (provided-feature banks only)")
        if self.text:
            from curator.sim.text import check_skills

            check_skills(self.n_skills)
        if self.n_buckets < 1:
            raise ValueError("n_buckets must be ≥ 1")

    def make(self, seed: int) -> SimBank:
        """The bank this config describes for `seed` (`make_bank`)."""
        return make_bank(self, seed)
        if not 0 <= self.skill_relatedness < 1:
            raise ValueError("skill_relatedness must be in [0, 1)")


@dataclass
class ProblemSet:
    """Ground truth of a set of problems (arrays of length n)."""

    skill: np.ndarray  # int64
    difficulty: np.ndarray  # float64, true difficulty (traps: nominal)
    kind: np.ndarray  # int8: NORMAL, TRAP, HARD
    bucket: np.ndarray  # int64 in [1, n_buckets]
    features: np.ndarray  # float32 [n, dim], unit norm (text banks: [n, 0] until embedded)
    prompts: list[str] | None = None  # text banks' training prompts

    def __len__(self) -> int:
        return len(self.skill)

    @property
    def is_trap(self) -> np.ndarray:
        return self.kind == TRAP

    @property
    def is_hard(self) -> np.ndarray:
        return self.kind == HARD

    @property
    def is_unanswerable(self) -> np.ndarray:
        return self.kind == UNANSWERABLE

    @property
    def is_noise(self) -> np.ndarray:
        """Problems whose reward carries no information about the answer (NOISE_KINDS)."""
        return np.isin(self.kind, NOISE_KINDS)

    def kind_name(self, i: int) -> str:
        return KINDS[int(self.kind[i])]


@dataclass
class SimBank:
    """The training bank (uploaded to the service) and the held-out set (kept local)."""

    config: BankConfig
    seed: int
    train: ProblemSet
    heldout: ProblemSet
    bucket_edges: np.ndarray  # n_buckets − 1 cut points on the rated difficulty
    embedder: str = "provided"  # what train.features holds: "provided", or embed_bank's

    def external_id(self, i: int) -> str:
        return f"sim-{i:06d}"

    @property
    def is_text(self) -> bool:
        return self.train.prompts is not None

    def problems(self) -> Iterator[dict]:
        """The training problems as the service's bank payload: provided embeddings, or
        for a text bank the rendered prompts (the server embeds them itself)."""
        t = self.train
        for i in range(len(t)):
            k, b = int(t.skill[i]), int(t.bucket[i])
            text = t.prompts[i] if t.prompts is not None else f"[sim] skill s{k}, problem {i}"
            item: dict[str, Any] = {
                "external_id": self.external_id(i),
                "prompt": text,
                "answer": "",
                "metadata": {"skill": f"s{k}", "difficulty": str(b), "kind": t.kind_name(i)},
            }
            if t.prompts is None:
                item["embedding"] = t.features[i].tolist()
            yield item

    def summary(self) -> dict:
        t = self.train
        return {
            "config": asdict(self.config),
            "seed": self.seed,
            "n_train": len(t),
            "n_heldout": len(self.heldout),
            "trap_share": float(t.is_trap.mean()),
            "hard_share": float(t.is_hard.mean()),
            "unanswerable_share": float(t.is_unanswerable.mean()),
            "noise_share": float(t.is_noise.mean()),
            "bucket_edges": [float(x) for x in self.bucket_edges],
        }


def _skill_centres(cfg: BankConfig, rng: np.random.Generator) -> np.ndarray:
    rho = cfg.skill_relatedness
    centres = np.empty((cfg.n_skills, cfg.dim))
    c = rng.standard_normal(cfg.dim)
    centres[0] = c / np.linalg.norm(c)
    for k in range(1, cfg.n_skills):
        fresh = rng.standard_normal(cfg.dim)
        fresh /= np.linalg.norm(fresh)
        c = rho * centres[k - 1] + np.sqrt(1 - rho**2) * fresh
        centres[k] = c / np.linalg.norm(c)
    return centres


def _kinds(n: int, shares: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """A random permutation of round(share·n) traps, hard and unanswerable problems."""
    kind = np.zeros(n, dtype=np.int8)
    start = 0
    for code, share in zip((TRAP, HARD, UNANSWERABLE), shares):
        count = int(round(share * n))
        kind[start:start + count] = code
        start += count
    return rng.permutation(kind)


def _draw(cfg: BankConfig, n: int, shares: tuple[float, float, float],
          centres: np.ndarray, direction: np.ndarray, edges: np.ndarray,
          rng: np.random.Generator, prompt_seed: int | None = None) -> ProblemSet:
    """n problems with the given (trap, hard, unanswerable) shares; with `prompt_seed`
    (text banks) also their prompts, and no features."""
    mu, sd = cfg.difficulty_mean, cfg.difficulty_std
    kind = _kinds(n, shares, rng)
    skill = rng.integers(0, cfg.n_skills, size=n)
    difficulty = rng.normal(mu, sd, size=n)
    hard = kind == HARD
    difficulty[hard] = mu + cfg.hard_offset_std * sd + rng.uniform(0.0, 2.0, size=hard.sum())
    unanswerable = kind == UNANSWERABLE
    if unanswerable.any():  # drawn only when present: default banks keep their stream
        difficulty[unanswerable] = rng.normal(mu, cfg.unanswerable_spread * sd,
                                              size=unanswerable.sum())

    perceived = difficulty + rng.normal(0.0, cfg.perceived_difficulty_noise * sd, size=n)
    level = np.tanh((perceived - mu) / (2.0 * sd))
    noise = rng.standard_normal((n, cfg.dim)) * (cfg.feature_noise / np.sqrt(cfg.dim))
    base = centres[skill]
    if cfg.trap_source > 0 and (kind == TRAP).any():  # drawn only when asked: same stream
        src = rng.standard_normal(cfg.dim)
        trap = np.flatnonzero(kind == TRAP)
        grouped = trap[rng.random(trap.size) < cfg.trap_source]
        base = base.copy()
        base[grouped] = src / np.linalg.norm(src)
    feats = base + cfg.feature_difficulty * level[:, None] * direction[None, :] + noise
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)

    rated = difficulty + rng.normal(0.0, cfg.label_noise * sd, size=n)
    bucket = np.searchsorted(edges, rated) + 1
    bucket[hard] = cfg.n_buckets
    prompts = None
    if prompt_seed is not None:
        from curator.sim.text import render_prompts

        prompts = render_prompts(prompt_seed, skill, level, cfg.n_skills)
        feats = np.zeros((n, 0))
    return ProblemSet(skill=skill.astype(np.int64), difficulty=difficulty, kind=kind,
                      bucket=bucket.astype(np.int64), features=feats.astype(np.float32),
                      prompts=prompts)


def make_bank(config: BankConfig | None = None, seed: int = 0) -> SimBank:
    """Draw a bank and its held-out set; deterministic given (config, seed)."""
    cfg = config or BankConfig()
    cfg.validate()
    rng = np.random.default_rng([seed, 0x5EB])
    centres = _skill_centres(cfg, rng)
    direction = rng.standard_normal(cfg.dim)
    direction /= np.linalg.norm(direction)
    # Bucket edges: quantiles of the (noisy) rating of a normal problem, so the labels
    # split the ordinary problems evenly, as a dataset's levels roughly do.
    rated_sd = cfg.difficulty_std * np.sqrt(1.0 + cfg.label_noise**2)
    qs = np.arange(1, cfg.n_buckets) / cfg.n_buckets
    from statistics import NormalDist

    edges = np.array([NormalDist(cfg.difficulty_mean, rated_sd).inv_cdf(q) for q in qs])
    shares = (cfg.trap_share, cfg.hard_share, cfg.unanswerable_share)
    train = _draw(cfg, cfg.n_problems, shares, centres, direction, edges, rng,
                  prompt_seed=seed if cfg.text else None)
    held_hard = cfg.hard_share / (1.0 - cfg.trap_share - cfg.unanswerable_share)
    heldout = _draw(cfg, cfg.n_heldout, (0.0, held_hard, 0.0), centres, direction, edges, rng)
    if cfg.text:  # the held-out set is scored from ground truth: no embedding needed
        heldout.features = np.zeros((len(heldout), 0), dtype=np.float32)
    return SimBank(config=cfg, seed=seed, train=train, heldout=heldout, bucket_edges=edges)


def embed_bank(bank: SimBank, embedder_name: str, dim: int | None = None) -> np.ndarray:
    """Embed a text bank's prompts with the server's own embedder ("hash" or "minilm",
    built by curator.bank.embed.make_embedder, so the vectors are what the service
    would store); sets `bank.train.features` and returns it, float32 [n, dim]."""
    from curator.bank.embed import make_embedder

    prompts = bank.train.prompts
    if prompts is None:
        raise ValueError("embed_bank needs a text bank (BankConfig(text=True))")
    embedder = make_embedder(embedder_name, dim)
    if embedder is None:
        raise ValueError("a text bank has no provided embeddings; use 'hash' or 'minilm'")
    from tqdm import tqdm

    out = np.empty((len(prompts), embedder.dim), dtype=np.float32)
    starts = tqdm(range(0, len(prompts), EMBED_BATCH), desc=f"embed ({embedder_name})",
                  unit="batch", leave=False, disable=len(prompts) < PROGRESS_MIN)
    for start in starts:
        out[start:start + EMBED_BATCH] = embedder.embed(prompts[start:start + EMBED_BATCH])
    bank.train.features = out
    bank.embedder = embedder_name
    return out

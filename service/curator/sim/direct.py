"""The service's selection and update path without HTTP or a database, for fast studies.

`simulate_run_direct` runs exactly what `select_batch` (runs/selection.py) and the
worker (worker/updater.py) do for one run, in one process: the same keyed proposal
(cursor + Feistel permutation, epoch boundaries included), the same strategy object's
`logits`, the same sampler with the same per-step random stream
(`default_rng([seed, step])`), the same utility (`summarise_group`) and the same
`Observation`s handed to `update` (`curation.step.observations`). With `sync_feedback`
(every select sees every earlier update, as in the HTTP simulator) a direct run
reproduces the service's trajectory; `tests/sim/test_direct.py` checks that step for
step against the real app.

What it skips is everything that is not the algorithm: JSON, SQL, checkpoints (the
strategy is not reloaded from its `state_dict` between select and update — the
service's API does reload it; the equivalence test covers that the state is complete).
It is ~10× faster, which is what makes scenario × strategy × seed studies possible on
a laptop. Also here: `oracle`, a greedy selector that reads the simulator's ground
truth (not available to any real strategy), as a reference line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from curator.curation import step as curation_step
from curator.curation.proposal import pool_positions
from curator.curation.strategies import build_strategy
from curator.curation.utility import summarise_group
from curator.sim.bank import NOISE_KINDS, SimBank
from curator.sim.protocol import SimStudent, StudentSpec
from curator.sim.student import StudentConfig, realised_improvement
from curator.sim.trainer import RunRecord, TrainerConfig, record_step

ORACLE = "oracle"


def _pool(cursor: int, m: int, n: int, seed: int) -> tuple[np.ndarray, int]:
    """(positions, new cursor): the service's proposal, repeats at an epoch edge refilled."""
    positions = pool_positions(cursor, m, n, seed)
    cursor += m
    while positions.size < m:
        more = pool_positions(cursor, m - positions.size, n, seed)
        cursor += m - positions.size
        positions = np.concatenate([positions, more[~np.isin(more, positions)]])
    return positions, cursor


def oracle_scores(stud: SimStudent, bank: SimBank, idx: np.ndarray, rollouts: int) -> np.ndarray:
    """Expected one-step learning signal from the ground truth: E[std of G rewards]
    ≈ √(p(1−p))·√((G−1)/G) at the true solve probability, times how readily the
    problem's skill learns now (`Student.learn_rate`, when the student has one); zero for
    noise (bank.NOISE_KINDS: coin flips, unanswerable, a rewarded wrong answer)."""
    t = bank.train
    p = stud.train_prob(t, idx)
    score = np.sqrt(np.clip(p * (1.0 - p), 0.0, None)) * math.sqrt((rollouts - 1) / rollouts)
    rate = getattr(stud, "learn_rate", None)
    if callable(rate):
        score = score * rate()[t.skill[idx]]
    return np.where(np.isin(t.kind[idx], NOISE_KINDS), 0.0, score)


def simulate_run_direct(
    bank: SimBank,
    features: np.ndarray,
    strategy: str,
    *,
    seed: int,
    params: Mapping[str, Any] | None = None,
    trainer: TrainerConfig | None = None,
    student: StudentSpec | None = None,
    on_step: Callable[[int], Any] | None = None,
    warm: Mapping[str, Any] | None = None,
    keep: list | None = None,
) -> RunRecord:
    """One run of `strategy` (or `oracle`) on a fresh student; see the module doc.

    `features` [n_train, d] are what the service would hold as the bank's embeddings
    (provided vectors, or the server embedder's output for a text bank). `warm`: start
    from another run's `warm_state()` (the service's `init_from`); `keep`: a list the
    trained strategy is appended to.
    """
    cfg = trainer or TrainerConfig()
    cfg.validate()
    scfg = student or StudentConfig()
    params = dict(params or {})
    train = bank.train
    n = len(train)
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.shape[0] != n:
        raise ValueError(f"features has {features.shape[0]} rows for {n} problems")
    stud = scfg.build(bank, seed)
    rng = np.random.default_rng([seed, 0x7A1])
    rec = RunRecord(strategy=strategy, seed=seed, params=params)
    strat = None
    if strategy != ORACLE:
        strat = build_strategy(strategy, params, dim=int(features.shape[1]), seed=seed)
        if warm is not None:
            strat.load_warm(dict(warm))

    t0 = time.perf_counter()
    rec.eval_steps.append(0)
    rec.accuracy.append(stud.accuracy(bank.heldout))
    cursor = 0
    m = min(cfg.pool_size, n)
    for step in range(1, cfg.steps + 1):
        positions, cursor = _pool(cursor, m, n, seed)
        if strat is None:
            score = oracle_scores(stud, bank, positions, cfg.rollouts)
            pick = np.argsort(-score, kind="stable")[: cfg.batch_size]
            logits = np.zeros(m)
            sources = ["curator"] * cfg.batch_size
            props = np.full(cfg.batch_size, 1.0 / m)
        else:
            cats = None
            if strat.category_field:
                cats = [category(bank, int(i), strat.category_field) for i in positions]
            logits = curation_step.score(strat, positions, lambda p: features[p], cats)
            sel = curation_step.draw(logits, seed=seed, step=step, batch_size=cfg.batch_size,
                                     pool_size=m, active=strat.active(), top_p=strat.top_p,
                                     temperature=strat.temperature,
                                     explore=float(strat.explore_share))
            pick, sources, props = sel.indices, sel.sources, sel.propensities
        idx = positions[pick]
        rewards = stud.rollouts(train, idx, cfg.rollouts, rng)
        out = stud.step(train, idx, rewards, rng)
        if strat is not None:
            reported = []
            for j, i in enumerate(idx):
                ratios = None if cfg.rewards_only else out.log_ratios[j].tolist()
                u, kind, mean_r, mean_abs = summarise_group(rewards[j].tolist(), ratios)
                reported.append(curation_step.ReportedItem(
                    problem_id=int(i), logit=float(logits[pick[j]]),
                    propensity=float(props[j]), source=sources[j], utility=u,
                    utility_kind=kind, mean_reward=mean_r, mean_abs_advantage=mean_abs))
            cats = ([category(bank, int(i), strat.category_field) for i in idx]
                    if strat.category_field else None)
            strat.update(curation_step.observations(reported, features[idx], cats))
        util = realised_improvement(rewards, out.log_ratios)
        record_step(rec, train, idx, rewards, util, sources)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec.eval_steps.append(step)
            rec.accuracy.append(stud.accuracy(bank.heldout))
        if on_step is not None:
            on_step(step)
    rec.final_ability = stud.abilities()
    rec.seconds = time.perf_counter() - t0
    if keep is not None:
        keep.append(strat)
    return rec


_METADATA: dict[int, list[dict[str, Any]]] = {}


def category(bank: SimBank, i: int, field: str | None) -> str | None:
    """Problem i's metadata value for `field`, as the service would read it (a string)."""
    if not field:
        return None
    meta = _METADATA.get(id(bank))
    if meta is None:
        meta = _METADATA[id(bank)] = [p["metadata"] for p in bank.problems()]
    value = meta[i].get(field)
    return None if value is None else str(value)

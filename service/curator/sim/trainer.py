"""One simulated GRPO training run against a Curator service, through the real client.

Each step: `run.select(batch_size=B, pool_size=M)` → G Bernoulli rollouts per selected
problem from the synthetic student → one student update (student.py) → `run.feedback`
with per-problem `rewards` and `log_ratios` (the service computes Û = mean A_i·s_i) →
held-out accuracy every `eval_every` steps.

`sync_feedback` (default True): after reporting a batch, poll `run.info()` until the
service's worker has *applied* every reported ticket (bounded by `sync_timeout`). A real
trainer never waits — the service applies feedback asynchronously and the next select
uses whichever curator version is loaded. Here the trainer and the service share a
2-core box, so how many updates land before the next select would depend on scheduling
noise, and a comparison of strategies would partly measure CPU contention. Waiting
makes every run a deterministic function of its seed (selection at step t always sees
exactly the t updates before it), which is what a like-for-like comparison needs; turn it
off to exercise the asynchronous path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curator.sim.bank import HARD, NOISE_KINDS, TRAP, UNANSWERABLE, ProblemSet, SimBank
from curator.sim.protocol import StudentSpec
from curator.sim.student import StudentConfig, realised_improvement


@dataclass(frozen=True)
class TrainerConfig:
    steps: int = 150
    batch_size: int = 64
    pool_size: int = 512
    rollouts: int = 8
    eval_every: int = 1
    sync_feedback: bool = True
    sync_timeout: float = 60.0
    rewards_only: bool = False  # report rewards without log-ratios (what TRL/verl send)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.rollouts < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_size, rollouts and eval_every must be ≥ 1")
        if self.pool_size < self.batch_size:
            raise ValueError("pool_size must be ≥ batch_size")


class SyncTimeout(RuntimeError):
    """The service did not apply a reported ticket within `sync_timeout` seconds."""


@dataclass
class RunRecord:
    """Everything recorded about one simulated run."""

    strategy: str
    seed: int
    params: dict[str, Any]
    run_id: int = 0
    eval_steps: list[int] = field(default_factory=list)  # step count after which evaluated
    accuracy: list[float] = field(default_factory=list)  # held-out accuracy at eval_steps
    trap_share: list[float] = field(default_factory=list)  # per step, share of the batch
    hard_share: list[float] = field(default_factory=list)
    unanswerable_share: list[float] = field(default_factory=list)
    noise_share: list[float] = field(default_factory=list)  # any of bank.NOISE_KINDS
    mean_reward: list[float] = field(default_factory=list)
    no_signal_share: list[float] = field(default_factory=list)  # groups with equal rewards
    curator_share: list[float] = field(default_factory=list)  # source == "curator"
    # mean Û (as the service computes it) of the selected problems with signal that are
    # not traps, and of the selected traps; None when there were none
    utility_normal: list[float | None] = field(default_factory=list)
    utility_trap: list[float | None] = field(default_factory=list)
    # the same for every kind of noise (bank.NOISE_KINDS) with signal, and for useful
    # (not noise) problems with signal: what the service's Û tells them apart by
    utility_noise: list[float | None] = field(default_factory=list)
    utility_useful: list[float | None] = field(default_factory=list)
    final_ability: list[float] = field(default_factory=list)
    seconds: float = 0.0
    wait_seconds: float = 0.0  # time spent waiting for the worker (sync_feedback)
    service_stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def record_step(rec: RunRecord, train: ProblemSet, idx: np.ndarray, rewards: np.ndarray,
                util: np.ndarray, sources: list[str]) -> None:
    """Append one step's selection diagnostics to `rec` (shared by both engines)."""
    kind = train.kind[idx]
    has_signal = rewards.std(axis=1) > 0
    noise = np.isin(kind, NOISE_KINDS)
    rec.trap_share.append(float((kind == TRAP).mean()))
    rec.hard_share.append(float((kind == HARD).mean()))
    rec.unanswerable_share.append(float((kind == UNANSWERABLE).mean()))
    rec.noise_share.append(float(noise.mean()))
    rec.mean_reward.append(float(rewards.mean()))
    rec.no_signal_share.append(float(1.0 - has_signal.mean()))
    rec.curator_share.append(float(np.mean([s == "curator" for s in sources])))
    rec.utility_normal.append(_mean_or_none(util[(kind != TRAP) & has_signal]))
    rec.utility_trap.append(_mean_or_none(util[kind == TRAP]))
    rec.utility_noise.append(_mean_or_none(util[noise & has_signal]))
    rec.utility_useful.append(_mean_or_none(util[~noise & has_signal]))


def wait_applied(run: Any, reported: int, timeout: float) -> float:
    """Poll `run.info()` until `tickets.applied >= reported`; returns seconds waited."""
    start = time.perf_counter()
    delay = 0.002
    while True:
        info = run.info()
        if info.tickets.applied >= reported:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise SyncTimeout(
                f"run {run.run_id}: {info.tickets.applied} of {reported} tickets applied "
                f"after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def simulate_run(
    client: Any,
    bank_id: int,
    bank: SimBank,
    id_map: Mapping[int, int],
    strategy: str,
    *,
    seed: int,
    params: Mapping[str, Any] | None = None,
    trainer: TrainerConfig | None = None,
    student: StudentSpec | None = None,
    on_step: Callable[[int], Any] | None = None,
) -> RunRecord:
    """Train a fresh student for `trainer.steps` steps with `strategy` choosing batches.

    `id_map` maps the service's problem_id to the index in `bank.train`. The student's
    initial abilities and the rollout stream depend only on `seed`, so every strategy
    starts from the same student for a given seed.
    """
    cfg = trainer or TrainerConfig()
    cfg.validate()
    scfg = student or StudentConfig()
    params = dict(params or {})
    train = bank.train
    stud = scfg.build(bank, seed)
    rng = np.random.default_rng([seed, 0x7A1])
    rec = RunRecord(strategy=strategy, seed=seed, params=params)

    t0 = time.perf_counter()
    run = client.create_run(bank_id, strategy=strategy, params=params, seed=seed,
                            name=f"sim {strategy} seed {seed}")
    rec.run_id = run.run_id
    rec.eval_steps.append(0)
    rec.accuracy.append(stud.accuracy(bank.heldout))
    for step in range(1, cfg.steps + 1):
        batch = run.select(cfg.batch_size, cfg.pool_size)
        pids = [p.problem_id for p in batch.problems]
        idx = np.fromiter((id_map[p] for p in pids), dtype=np.int64, count=len(pids))
        rewards = stud.rollouts(train, idx, cfg.rollouts, rng)
        out = stud.step(train, idx, rewards, rng)
        batch.report([{"problem_id": pid, "rewards": rewards[j]}
                      | ({} if cfg.rewards_only else {"log_ratios": out.log_ratios[j]})
                      for j, pid in enumerate(pids)])

        util = realised_improvement(rewards, out.log_ratios)
        record_step(rec, train, idx, rewards, util, [p.source for p in batch.problems])

        if cfg.sync_feedback:
            rec.wait_seconds += wait_applied(run, step, cfg.sync_timeout)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec.eval_steps.append(step)
            rec.accuracy.append(stud.accuracy(bank.heldout))
        if on_step is not None:
            on_step(step)
    rec.final_ability = stud.abilities()
    rec.seconds = time.perf_counter() - t0
    try:
        rec.service_stats = dict(run.info().stats)
    except Exception:  # diagnostics only
        rec.service_stats = {}
    return rec

"""What the simulated trainer needs of a bank and a student, whatever makes them.

The analytic student (student.py) computes its log-ratios from true before/after solve
probabilities; the real-policy students (policy.py: a torch MLP over answers; gym.py: a
tiny transformer on reasoning-gym tasks) sample real answers, are trained by a real GRPO
step and report their own log π_new − log π_old. Both engines (direct.py, trainer.py)
and the calibration loop (scenarios.run_uniform) see only these protocols, so a scenario
can bring either kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from curator.sim.bank import ProblemSet, SimBank, embed_bank


class SimStudent(Protocol):
    """A policy the simulated trainer samples from and trains.

    `rollouts` samples G answers per problem and returns their rewards [n, G]; the
    following `step` trains on exactly those rollouts (a real student keeps the sampled
    answers in between) and returns the per-rollout log-ratios.
    """

    def rollouts(self, problems: ProblemSet, idx: np.ndarray, n_rollouts: int,
                 rng: np.random.Generator) -> np.ndarray: ...

    def step(self, problems: ProblemSet, idx: np.ndarray, rewards: np.ndarray,
             rng: np.random.Generator) -> Any: ...  # .log_ratios [n, G]

    def accuracy(self, heldout: ProblemSet) -> float: ...

    def train_prob(self, problems: ProblemSet, idx: np.ndarray) -> np.ndarray:
        """P(reward = 1) now (ground truth, for the oracle only)."""
        ...

    def abilities(self) -> list[float]:
        """A short summary of the final policy for the run record (per-skill)."""
        ...


class StudentSpec(Protocol):
    """A frozen config that validates itself and builds a fresh student for a seed."""

    def validate(self) -> None: ...

    def to_dict(self) -> dict: ...

    def build(self, bank: SimBank, seed: int) -> SimStudent: ...


class BankSpec(Protocol):
    """A frozen config that draws a bank for a seed (`text`: prompts, no features)."""

    text: bool

    def make(self, seed: int) -> SimBank: ...


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line for tables
    bank: BankSpec  # BankConfig, or a real-policy scenario's bank config
    student: StudentSpec  # StudentConfig, or a real-policy student's config
    embedder: str = "provided"  # "provided" | "hash" | "minilm"
    steps: int = 400  # default run length (B=64, M=512, G=8)
    # TrainerConfig fields other than steps (a costly student evaluates every N steps,
    # with a smaller batch); {} = the defaults
    trainer: Mapping[str, Any] = field(default_factory=dict)
    max_seeds: int | None = None  # a costly student runs only the first N seeds asked

    def trainer_defaults(self) -> dict[str, Any]:
        """The TrainerConfig fields this scenario sets: its steps and `trainer`."""
        return {"steps": self.steps, **self.trainer}

    def make_bank(self, seed: int) -> SimBank:
        """The scenario's bank for `seed` (text banks not yet embedded)."""
        return self.bank.make(seed)

    def features(self, bank: SimBank) -> np.ndarray:
        """What the service holds as the bank's embeddings: the provided features, or
        the scenario's embedder run over the prompts (computed once per bank, kept on
        it: MiniLM takes minutes on a CPU)."""
        if bank.embedder != self.embedder:
            embed_bank(bank, self.embedder)
        return bank.train.features

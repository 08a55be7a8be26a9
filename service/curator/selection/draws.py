"""One select's draw from a scored pool, and the drawn problems as response JSON.

The select draws inline; the prescorer (selection/prescore.py) draws ahead for the step it
expects next. Both go through `draw`, keyed by the run's seed and the step, so a draw
made ahead is exactly the draw the select would have made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from curator.bank import access
from curator.bank.files import BankFiles
from curator.curation import step as step_
from curator.curation.sampler import entropy
from curator.db.models import Bank


@dataclass(frozen=True, eq=False)
class Draw:
    """`batch_size` problems drawn from a pool at `step`: what the ticket records and the
    response returns, in rank order."""

    step: int
    batch_size: int
    problem_ids: np.ndarray  # int64 [B] bank positions
    logits: np.ndarray  # float64 [B] z at selection (0 for a uniform draw)
    propensities: np.ndarray  # float64 [B]
    sources: list[str]
    pool_entropy: float
    problems_json: bytes | None = None  # the response's `problems` array, once encoded

    def item_rows(self, ticket_id: str) -> list[tuple[str, int, int, float, float, str]]:
        """ticket_items rows: (ticket_id, problem_id, rank, logit, propensity, source)."""
        return [(ticket_id, pid, rank, lg, pr, src) for rank, (pid, lg, pr, src) in enumerate(
            zip(self.problem_ids.tolist(), self.logits.tolist(), self.propensities.tolist(),
                self.sources))]


def draw(*, seed: int, step: int, batch_size: int, positions: np.ndarray,
         logits: np.ndarray, active: bool, top_p: float, temperature: float,
         explore: float) -> Draw:
    """Sample `batch_size` of the pool at `positions` (docs/design.md, "Sampling"); the
    rng is keyed by (seed, step), so a replay draws the same problems."""
    selection = step_.draw(logits, seed=seed, step=step, batch_size=batch_size,
                           pool_size=int(positions.size), active=active, top_p=top_p,
                           temperature=temperature, explore=explore)
    return Draw(step=step, batch_size=batch_size,
                problem_ids=np.asarray(positions[selection.indices], dtype=np.int64),
                logits=np.asarray(logits, dtype=np.float64)[selection.indices],
                propensities=np.asarray(selection.propensities, dtype=np.float64),
                sources=list(selection.sources),
                pool_entropy=float(entropy(selection.pool_probs)))


def with_problems(d: Draw, files: BankFiles, session_factory: sessionmaker[Session],
                  bank: Bank) -> Draw:
    """`d` with its response JSON, spliced from the bank's pre-encoded problems
    (bank/payloads.py): re-validating and re-encoding 256 problems per select would cost
    more than the rest of it."""
    fragments = access.payloads(files, session_factory, bank, d.problem_ids.tolist())
    parts = [b'{"problem_id":%d,%s,"propensity":%s,"source":"%s"}'
             % (pid, frag, repr(prop).encode(), src.encode())
             for pid, frag, prop, src in zip(d.problem_ids.tolist(), fragments,
                                             d.propensities.tolist(), d.sources)]
    return dataclasses.replace(d, problems_json=b"[" + b",".join(parts) + b"]")

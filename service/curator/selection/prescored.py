"""`Prescored`: the logits of one candidate pool under one model version — the value the
prescorer (selection/prescore.py) leaves in the snapshot cache, the worker announces to
replicas, and a select uses when its claim matches."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from curator.selection.draws import Draw


@dataclass(frozen=True, eq=False)
class Prescored:
    """Logits of one pool under one model version, and that version's sampler settings;
    optionally the next select's draw from it, made ahead (`with_draw`)."""

    version: int
    start: int
    bank_size: int
    positions: np.ndarray  # int64 [m]
    logits: np.ndarray  # float64 [m]
    active: bool
    top_p: float
    temperature: float
    explore: float
    used: int = -1  # how far the claim advances the cursor (-1: the pool size)
    step: int = -1  # the step the next claim is expected to return (-1: unknown)
    drawn: Draw | None = None  # not announced: a replica draws for itself

    def __post_init__(self) -> None:
        if self.used < 0:
            object.__setattr__(self, "used", int(self.positions.size))

    def encode(self) -> str:
        """One line of text for a pub/sub announcement (about 44 kB for a 2,048 pool)."""
        return json.dumps({
            "version": self.version, "start": self.start, "bank_size": self.bank_size,
            "active": self.active, "top_p": self.top_p, "temperature": self.temperature,
            "explore": self.explore, "used": self.used, "step": self.step,
            "positions": base64.b64encode(self.positions.astype("<i8").tobytes()).decode(),
            "logits": base64.b64encode(self.logits.astype("<f8").tobytes()).decode()})

    @classmethod
    def decode(cls, text: str) -> Prescored:
        d = json.loads(text)
        positions = np.frombuffer(base64.b64decode(d["positions"]), dtype="<i8")
        logits = np.frombuffer(base64.b64decode(d["logits"]), dtype="<f8")
        if positions.shape != logits.shape:
            raise ValueError("prescored positions and logits differ in length")
        return cls(version=int(d["version"]), start=int(d["start"]),
                   bank_size=int(d["bank_size"]), positions=positions.astype(np.int64),
                   logits=logits.astype(np.float64), active=bool(d["active"]),
                   top_p=float(d["top_p"]), temperature=float(d["temperature"]),
                   explore=float(d["explore"]), used=int(d.get("used", -1)),
                   step=int(d.get("step", -1)))

    def matches(self, version: int, start: int, bank_size: int, pool_size: int) -> bool:
        """Whether this is the pool a claim at (version, start) with this bank and pool
        size gets (the same positions: `claim_pool` is a pure function of them)."""
        return (self.version == version and self.start == start
                and self.bank_size == bank_size and self.positions.size == pool_size)

    def draw_for(self, step: int, batch_size: int) -> Draw | None:
        """The draw made ahead, if it is this select's."""
        d = self.drawn
        if d is None or d.step != step or d.batch_size != batch_size:
            return None
        return d

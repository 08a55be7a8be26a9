"""Run handles: a client + run id + run token, and the batches a training loop consumes.

    run = client.create_run(bank_id, strategy="actor_curator")
    for batch in run.batches(batch_size=256, steps=100):
        batch.report([{"problem_id": p.problem_id, "rewards": rollouts(p)} for p in batch])

`batches()` does not check that the previous batch was reported before selecting the next:
a trainer may skip a batch (e.g. a failed rollout step); its ticket simply never gets
feedback. `Batch.reported` tells whether `report()` was called.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._metrics import RunMeter, service_metrics
from ._models import (
    CreatedRun,
    FeedbackReceipt,
    Problem,
    Result,
    RunInfo,
    Ticket,
    result_to_json,
)

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = ["AsyncBatch", "AsyncRun", "Batch", "Run"]

ResultLike = Result | Mapping[str, Any]


def _check_steps(steps: int | None) -> None:
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0 or None, got {steps}")


class _RunBase:
    """What both run handles hold. `created` is set when the handle came from create_run."""

    def __init__(self, run_id: int, token: str | None, created: CreatedRun | None) -> None:
        self.run_id = int(run_id)
        self.token = token
        self.created = created
        self.meter = RunMeter()  # this handle's selects and feedback, for `metrics()`

    def __repr__(self) -> str:  # the token stays out of reprs and logs
        return f"{self.__class__.__name__}(run_id={self.run_id!r})"


class _BatchBase:
    """A selected ticket plus its problems; iterate it for the problems."""

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.receipt: FeedbackReceipt | None = None

    @property
    def ticket_id(self) -> str:
        return self.ticket.ticket_id

    @property
    def run_id(self) -> int:
        return self.ticket.run_id

    @property
    def step(self) -> int:
        return self.ticket.step

    @property
    def model_version(self) -> int:
        return self.ticket.model_version

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.ticket.problems

    @property
    def reported(self) -> bool:
        """Whether `report()` has succeeded for this batch."""
        return self.receipt is not None

    def __len__(self) -> int:
        return len(self.ticket.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.ticket.problems)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(ticket_id={self.ticket_id!r}, step={self.step!r}, "
            f"problems={len(self)}, reported={self.reported!r})"
        )


class Batch(_BatchBase):
    """One batch from `Run.select()` / `Run.batches()`; send its results with `report()`."""

    def __init__(self, run: Run, ticket: Ticket) -> None:
        super().__init__(ticket)
        self._run = run

    def report(self, results: Iterable[ResultLike], *, final: bool = True) -> FeedbackReceipt:
        """Send feedback for this batch's ticket (`Result`s or dicts). `final` (the
        default): these are all the results this batch will get, so the ticket is applied
        with them even if some problems have none; `final=False` to send it in parts."""
        self.receipt = self._run.feedback(self.ticket_id, results, final=final)
        return self.receipt


class AsyncBatch(_BatchBase):
    """Async twin of `Batch`."""

    def __init__(self, run: AsyncRun, ticket: Ticket) -> None:
        super().__init__(ticket)
        self._run = run

    async def report(self, results: Iterable[ResultLike], *,
                     final: bool = True) -> FeedbackReceipt:
        self.receipt = await self._run.feedback(self.ticket_id, results, final=final)
        return self.receipt


class Run(_RunBase):
    """Handle on one run, sending its own `token` (None: the client's token)."""

    def __init__(
        self,
        client: Client,
        run_id: int,
        token: str | None = None,
        *,
        created: CreatedRun | None = None,
    ) -> None:
        super().__init__(run_id, token, created)
        self.client = client

    def info(self) -> RunInfo:
        return self.client.get_run(self.run_id, token=self.token)

    def select(self, batch_size: int, pool_size: int | None = None) -> Batch:
        """Select one batch; returns a `Batch` to `report()` on. Retried on connection
        errors with one Idempotency-Key, so a retry never issues a second ticket."""
        t0 = time.perf_counter()
        ticket = self.client.select(self.run_id, batch_size, pool_size, token=self.token)
        self.meter.selected(ticket, time.perf_counter() - t0)
        return Batch(self, ticket)

    def feedback(self, ticket_id: str, results: Iterable[ResultLike], *,
                 final: bool = False) -> FeedbackReceipt:
        """Results for some or all of a ticket's problems (see `Client.feedback`)."""
        sent = [result_to_json(r) for r in results]
        t0 = time.perf_counter()
        receipt = self.client.feedback(self.run_id, ticket_id, sent, token=self.token,
                                       final=final)
        self.meter.reported(sent, time.perf_counter() - t0)
        return receipt

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> dict[str, Any]:
        """Report the trainer's own numbers for a step (see `Client.log_metrics`)."""
        return self.client.log_metrics(self.run_id, step, metrics, token=self.token)

    def metrics(self, *, window: int = 50, service: bool = True) -> dict[str, float]:
        """`curator/*` numbers for any logger (see curator_client/_metrics.py): this
        handle's last select and feedback, and with `service` (two GETs the run's token
        may make) the model version, the tickets waiting to be applied and the in-run
        control over the last `window` tickets (curator vs explore utility, zero-signal
        share, reward)."""
        out = self.meter.flat()
        if service:
            out |= service_metrics(self.info(), self.client.value(
                self.run_id, window=window, token=self.token))
        return out

    def batches(
        self, batch_size: int, pool_size: int | None = None, steps: int | None = None
    ) -> Iterator[Batch]:
        """Yield `steps` batches (forever if None), selecting each when it is requested.

        Unreported batches are allowed (see the module docstring).
        """
        _check_steps(steps)
        done = 0
        while steps is None or done < steps:
            yield self.select(batch_size, pool_size)
            done += 1


class AsyncRun(_RunBase):
    """Async twin of `Run`; `batches()` is an async iterator."""

    def __init__(
        self,
        client: AsyncClient,
        run_id: int,
        token: str | None = None,
        *,
        created: CreatedRun | None = None,
    ) -> None:
        super().__init__(run_id, token, created)
        self.client = client

    async def info(self) -> RunInfo:
        return await self.client.get_run(self.run_id, token=self.token)

    async def select(self, batch_size: int, pool_size: int | None = None) -> AsyncBatch:
        t0 = time.perf_counter()
        ticket = await self.client.select(self.run_id, batch_size, pool_size, token=self.token)
        self.meter.selected(ticket, time.perf_counter() - t0)
        return AsyncBatch(self, ticket)

    async def feedback(self, ticket_id: str, results: Iterable[ResultLike], *,
                       final: bool = False) -> FeedbackReceipt:
        sent = [result_to_json(r) for r in results]
        t0 = time.perf_counter()
        receipt = await self.client.feedback(self.run_id, ticket_id, sent, token=self.token,
                                             final=final)
        self.meter.reported(sent, time.perf_counter() - t0)
        return receipt

    async def log_metrics(self, step: int, metrics: Mapping[str, float]) -> dict[str, Any]:
        return await self.client.log_metrics(self.run_id, step, metrics, token=self.token)

    async def metrics(self, *, window: int = 50, service: bool = True) -> dict[str, float]:
        """See `Run.metrics`."""
        out = self.meter.flat()
        if service:
            out |= service_metrics(await self.info(), await self.client.value(
                self.run_id, window=window, token=self.token))
        return out

    async def batches(
        self, batch_size: int, pool_size: int | None = None, steps: int | None = None
    ) -> AsyncIterator[AsyncBatch]:
        _check_steps(steps)
        done = 0
        while steps is None or done < steps:
            yield await self.select(batch_size, pool_size)
            done += 1

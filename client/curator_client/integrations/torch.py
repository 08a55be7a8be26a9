"""PyTorch samplers for custom training loops: each step's prompts come from a Curator run.

    from curator_client.integrations.torch import CuratorBatchSampler, IndexedDataset

    sampler = CuratorBatchSampler(run, dataset, batch_size=32, steps=1000)
    loader = DataLoader(IndexedDataset(dataset), batch_sampler=sampler, collate_fn=...)
    for batch in loader:                         # one Curator ticket per batch
        rewards, log_ratios = train_step(batch)  # [B, G] each; log_ratios optional
        sampler.feedback(batch["index"], rewards, log_ratios)

`CuratorSampler` yields the same indices one at a time (each repeated `repeat` times, for
loaders that expand a prompt into its group by repetition); use it with
`DataLoader(batch_size=batch_size * repeat)`.

Feedback is matched by dataset index (see `TicketLedger`), so a `DataLoader` that
prefetches the next batch (worker processes) is attributed correctly; a ticket is sent as
soon as every problem in it has a result. Samplers are iterated in the main process, so
tickets and feedback stay there. One process: under `torch.distributed`, use
`broadcast=True` so rank 0 selects and every rank yields the same indices (shard them
yourself), and call `feedback` on rank 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset, Sampler

from ._core import IndexMap, TicketLedger

if TYPE_CHECKING:
    from .._models import FeedbackReceipt
    from .._runs import Run

__all__ = [
    "CuratorBatchSampler",
    "CuratorSampler",
    "IndexedDataset",
    "select_on_rank0",
    "sequence_log_ratios",
]


def sequence_log_ratios(new_logps: torch.Tensor, old_logps: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-rollout mean token log π_new − log π_old over the response mask: [N, T] → [N].

    This is the log of s_i in Û = (1/G) Σ A_i·s_i; compute `new_logps` with the policy
    after its update and `old_logps` with the policy that generated the rollouts.
    """
    diff = (new_logps.detach().float() - old_logps.detach().float())
    if mask is None:
        return diff.mean(dim=-1)
    m = mask.to(diff.dtype)
    return (diff * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)


def select_on_rank0(ledger: TicketLedger, batch_size: int) -> list[int]:
    """Select on rank 0 and broadcast the indices, so every rank yields the same ones
    (one ticket per step, not one per process). Plain `select` outside distributed runs."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return ledger.select(batch_size)
    box: list[Any] = [ledger.select(batch_size) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return list(box[0])


def _as_rows(values: Any) -> list[Any]:
    if values is None:
        return []
    if hasattr(values, "tolist"):
        return values.tolist()
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


class _LedgerSampler:
    """Selection, feedback and bookkeeping shared by both samplers."""

    def __init__(self, run: Run, dataset: Any = None, *, batch_size: int,
                 steps: int | None = None, index_map: IndexMap | None = None,
                 id_field: str | None = None, id_format: str | None = None,
                 pool_size: int | None = None, strict: bool = False,
                 broadcast: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if index_map is None:
            if dataset is None:
                raise ValueError("pass the dataset (or an IndexMap built from it)")
            index_map = IndexMap.from_dataset(dataset, id_field, id_format)
        if steps is None:
            steps = len(index_map) // batch_size  # one epoch's worth of steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.batch_size = batch_size
        self.steps = steps
        self.broadcast = broadcast
        self.ledger = TicketLedger(run, index_map, pool_size=pool_size, strict=strict)

    def _select(self) -> list[int]:
        if self.broadcast:
            return select_on_rank0(self.ledger, self.batch_size)
        return self.ledger.select(self.batch_size)

    def record(self, index: int, rewards: Sequence[float] | None = None,
               log_ratios: Sequence[float] | None = None, *,
               utility: float | None = None) -> bool:
        """One problem's result; see `TicketLedger.record`. Send with `report()`."""
        return self.ledger.record(index, rewards, log_ratios, utility=utility)

    def report(self, *, partial: bool = False) -> list[FeedbackReceipt]:
        return self.ledger.report(partial=partial)

    def feedback(self, indices: Any, rewards: Any, log_ratios: Any = None) -> list[FeedbackReceipt]:
        """Record a step's results and send every ticket now complete.

        `indices`: [B] dataset indices; `rewards`: [B, G] (lists, numpy or tensors);
        `log_ratios`: [B, G] per-rollout mean token log-ratios, or None (the service then
        falls back to mean |advantage|). A prompt repeated in `indices` (one row per
        rollout) is fine: its rows are gathered into one group.
        """
        idx = [int(i) for i in _as_rows(indices)]
        rew = _as_rows(rewards)
        lrs = _as_rows(log_ratios) if log_ratios is not None else None
        if len(rew) != len(idx) or (lrs is not None and len(lrs) != len(idx)):
            raise ValueError("indices, rewards and log_ratios must have the same length")
        groups: dict[int, tuple[list[float], list[float]]] = {}
        for k, i in enumerate(idx):
            r = rew[k] if isinstance(rew[k], list) else [rew[k]]
            lr = None if lrs is None else (lrs[k] if isinstance(lrs[k], list) else [lrs[k]])
            g = groups.setdefault(i, ([], []))
            g[0].extend(float(x) for x in r)
            if lr is not None:
                g[1].extend(float(x) for x in lr)
        unmatched = [i for i, (r, lr) in groups.items()
                     if not self.ledger.record(i, r, lr if lrs is not None else None)]
        if unmatched:  # a result nothing is waiting for is not silently dropped
            warnings.warn(f"curator: {len(unmatched)} result(s) match no outstanding ticket "
                          f"of this sampler (indices {unmatched[:10]}): not sent",
                          RuntimeWarning, stacklevel=2)
        return self.ledger.report()


class CuratorBatchSampler(_LedgerSampler, Sampler[list[int]]):
    """Yields one list of `batch_size` dataset indices per step, chosen by the run.

    `steps` batches per pass (default: len(dataset) // batch_size, one epoch's worth);
    the batch for a step is selected when the loader asks for it. Pass the dataset (its
    `IndexMap` is built from `id_field`/`id_format`, positions by default) or `index_map`.
    """

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield self._select()

    def __len__(self) -> int:
        return self.steps


class CuratorSampler(_LedgerSampler, Sampler[int]):
    """Yields the run's chosen dataset indices one by one, `batch_size` per step, each
    repeated `repeat` times in a row (a GRPO group of `repeat` rollouts per prompt).

    Use with `DataLoader(batch_size=batch_size * repeat, drop_last=True)`.
    """

    def __init__(self, run: Run, dataset: Any = None, *, batch_size: int, repeat: int = 1,
                 **kwargs: Any) -> None:
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        super().__init__(run, dataset, batch_size=batch_size, **kwargs)
        self.repeat = repeat

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.steps):
            for index in self._select():
                for _ in range(self.repeat):
                    yield index

    def __len__(self) -> int:
        return self.steps * self.batch_size * self.repeat


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so each item carries its index: a dict row gets an
    `"index"` key (`key`), anything else becomes `(index, item)`."""

    def __init__(self, dataset: Any, key: str = "index") -> None:
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, Mapping):
            return {**item, self.key: index}
        return index, item

"""TRL: `GRPOTrainer` drawing its prompts from a Curator run and reporting group rewards.

    from curator_client.integrations.trl import CuratorGRPOTrainer

    trainer = CuratorGRPOTrainer(
        model=model, reward_funcs=reward_fn, args=GRPOConfig(...),
        train_dataset=dataset, processing_class=tokenizer,
        curator_run=run,                      # client.create_run(...) or client.run(id, token)
    )
    trainer.train()

How it plugs in (TRL has no curriculum hook; these are the seams its own code offers):

- `_get_train_sampler` returns a `CuratorRepeatSampler`, which keeps `RepeatSampler`'s
  contract: per generation round it selects `generation_batch_size / num_generations`
  problems (one ticket), and yields each index `num_generations` times in a row, the
  whole chunk `num_iterations * steps_per_generation` times. Under several processes,
  rank 0 selects and broadcasts, so every process sees the same chunk, as TRL requires.
- `_calculate_rewards` is wrapped: after TRL computes the rewards of a generation batch
  (already gathered over processes), each prompt's group of `num_generations` rewards
  (the reward functions' weighted sum, as TRL uses it; unscorable completions dropped) is
  recorded against its dataset index. The index travels with the row in a
  `curator_index` column added to the train dataset (reward functions see it in kwargs).
- A `CuratorFeedbackCallback` sends every complete ticket at the end of each optimizer
  step, and what is left (partially) at the end of training.

Log-ratios: TRL exposes no per-rollout π_new/π_old after the optimizer step without an
extra forward pass, so only rewards are sent and the service falls back to mean |A|
(its run stats say so). Send `utility` yourself if you compute Û elsewhere.

Mapping: the bank's external ids must name rows of `train_dataset`: positions
("row-{i}", the default, as `add_dataset` and `curator bank import` write them) or an id
column (`curator_id_field`, `curator_id_format`). A map-style `datasets.Dataset` is
required (an `IterableDataset` cannot be indexed by a sampler).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback
from trl import GRPOTrainer

from ._core import IndexMap, TicketLedger
from .torch import select_on_rank0

if TYPE_CHECKING:
    from .._runs import Run

__all__ = [
    "CuratorFeedbackCallback",
    "CuratorGRPOMixin",
    "CuratorGRPOTrainer",
    "CuratorRepeatSampler",
    "INDEX_COLUMN",
]

INDEX_COLUMN = "curator_index"
"""Column holding each row's dataset index, added to the train dataset."""


class CuratorRepeatSampler(Sampler[int]):
    """`trl.trainer.utils.RepeatSampler`'s order, with each chunk of `batch_size` prompts
    selected by Curator when the loader reaches it (one ticket per chunk).

    `chunks` per pass defaults to len(dataset) // batch_size, as RepeatSampler's epoch.
    """

    def __init__(self, ledger: TicketLedger, *, mini_repeat_count: int, batch_size: int = 1,
                 repeat_count: int = 1, chunks: int | None = None) -> None:
        if min(mini_repeat_count, batch_size, repeat_count) < 1:
            raise ValueError("mini_repeat_count, batch_size and repeat_count must be >= 1")
        self.ledger = ledger
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.chunks = len(ledger.index_map) // batch_size if chunks is None else chunks

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.chunks):
            chunk = select_on_rank0(self.ledger, self.batch_size)
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        return self.chunks * self.batch_size * self.mini_repeat_count * self.repeat_count


class CuratorFeedbackCallback(TrainerCallback):
    """Sends the ledger's complete tickets after each optimizer step (main process)."""

    def __init__(self, ledger: TicketLedger) -> None:
        self.ledger = ledger
        self.receipts: list[Any] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.receipts.extend(self.ledger.report())
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.receipts.extend(self.ledger.report(partial=True))
        return control


class CuratorGRPOMixin:
    """Put before `GRPOTrainer` (or your subclass of it) in the bases; see the module doc.

    Keyword arguments taken off the trainer's: `curator_run` (a `Run`), and optionally
    `curator_id_field` / `curator_id_format` (the bank ↔ dataset mapping, positions by
    default), `curator_pool_size`, `curator_strict` (raise on feedback errors).
    """

    curator: TicketLedger
    curator_callback: CuratorFeedbackCallback

    def __init__(self, *args: Any, curator_run: Run, curator_id_field: str | None = None,
                 curator_id_format: str | None = None, curator_pool_size: int | None = None,
                 curator_strict: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "add_column"):
            raise TypeError("Curator needs a map-style datasets.Dataset as train_dataset, "
                            f"got {type(dataset).__name__}")
        index_map = IndexMap.from_dataset(dataset, curator_id_field, curator_id_format)
        if INDEX_COLUMN not in dataset.column_names:
            self.train_dataset = dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
        self.curator = TicketLedger(curator_run, index_map, pool_size=curator_pool_size,
                                    strict=curator_strict)
        self.curator_callback = CuratorFeedbackCallback(self.curator)
        self.add_callback(self.curator_callback)

    def _get_train_sampler(self, dataset: Any = None) -> Sampler:
        args = self.args
        return CuratorRepeatSampler(
            self.curator,
            mini_repeat_count=self.num_generations,
            batch_size=args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * args.steps_per_generation,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions,
                                                      completion_ids_list)
        if self.model.training and inputs and INDEX_COLUMN in inputs[0]:
            self._curator_record(inputs, rewards_per_func)
        return rewards_per_func

    def _curator_record(self, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor
                        ) -> None:
        from accelerate.utils import gather_object

        indices = gather_object([int(x[INDEX_COLUMN]) for x in inputs])  # every process
        if not self.accelerator.is_main_process:
            return
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        totals = (rewards_per_func * weights).nansum(dim=1)
        totals[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")  # unscorable
        g = self.num_generations
        rewards = totals.tolist()
        for start in range(0, len(indices) - g + 1, g):
            self.curator.record(indices[start], rewards[start:start + g])


class CuratorGRPOTrainer(CuratorGRPOMixin, GRPOTrainer):
    """`GRPOTrainer` whose training prompts come from a Curator run (see the module doc)."""

"""TRL: `GRPOTrainer` drawing its prompts from a Curator run and reporting group rewards
with per-rollout log-ratios.

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
  kept against its dataset index. The index travels with the row in a `curator_index`
  column added to the train dataset (reward functions see it in kwargs).
- A `CuratorFeedbackCallback` sends every complete ticket at the end of each optimizer
  step, and what is left (partially) at the end of training.

Log-ratios (`curator_log_ratios=True`, the default). The service's Actor-Curator utility
Û = mean_i A_i·s_i needs, per rollout, s_i = mean over its completion tokens of
log π_new − log π_old, where π_old sampled the rollout and π_new is the policy after the
optimizer step(s) that trained on it. The trainer computes it with one extra no-grad
forward over the completions TRL already holds (no generation), through TRL's own
`_get_per_token_logps_and_entropies` (same temperature, fused LM head, autocast), in
train mode as TRL's forwards, gradient checkpointing off for the pass:

- `_generate_and_score_completions` is wrapped: it keeps the process's generation batch
  (prompt and completion ids and masks, unshuffled) until π_new is known. A batch is
  trained on over `steps_per_generation × num_iterations` micro-steps; its π_new is the
  policy after the optimizer step that ends its last micro-step (`_step` reaching it).
- π_old is TRL's `old_per_token_logps` when TRL computed it (the batch outlives an
  optimizer step: `gradient_accumulation_steps` not a multiple of
  `steps_per_generation × num_iterations`, or vLLM importance sampling). Otherwise no
  update happens between sampling and the loss, so π_old is the loss forward's own
  log-probs: `_compute_loss` / `_get_per_token_logps_and_entropies` are wrapped to keep
  them (detached, the first pass when num_iterations > 1), put back in place through a
  `curator_row` tensor added to the batch (TRL shuffles it into micro-batches).
- After each optimizer step (`on_step_end`, every process) the batches whose last
  micro-step is done get the forward; each process gathers (dataset index, global row,
  log-ratio) to the main process (`gather_object`, as the rewards), which records each
  group's rewards with its log-ratios (`TicketLedger.record`; an unscorable reward drops
  with its log-ratio) and sends the complete tickets. At the end of training, batches
  not yet through their last optimizer step are scored with the final policy.

Cost: one forward over the generation batch's prompt + completion tokens, once per
generation batch (not per iteration): about 1/3 of one training pass (forward + backward)
over those tokens, 1/4 with gradient checkpointing, 1/(3·num_iterations) of the training
with num_iterations passes. Generation usually dominates a GRPO step, so the extra time
is (1 − g)/3 of a step where generation takes a share g: ~3% at g = 0.9, ~7% at g = 0.8,
~17% at g = 0.5. bench/trl_log_ratio_cost.py measures ~9-12% of a step (on/off
ratio 1.09-1.12) on the tiny CPU model, where generation is only ~55-60% of a step,
and estimates ~1-3% for a 0.5B policy with HF `generate` and ~5-9% with vLLM (64
rollouts of 200 + 512 tokens, 15-30% MFU on an H100). Memory: the batch's tensors,
which TRL holds anyway, and a [rows, completion length] float buffer when π_old comes
from the loss.
Set `GRPOConfig(disable_dropout=True)` on a policy with active dropout (a warning says
so): TRL's π_old forward and this pass both run in train mode, and two independent
dropout masks add noise to s_i as large as one step's change.

`curator_log_ratios=False` sends rewards only, recorded as soon as they are computed,
with no extra forward; the service then falls back to mean |A| (its run stats say so).
Send `utility` yourself if you compute Û elsewhere.

Mapping: the bank's external ids must name rows of `train_dataset`: positions
("row-{i}", the default, as `add_dataset` and `curator bank import` write them) or an id
column (`curator_id_field`, `curator_id_format`). A map-style `datasets.Dataset` is
required (an `IterableDataset` cannot be indexed by a sampler).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import trl
from packaging.version import Version
from torch.utils.data import Sampler
from transformers import TrainerCallback
from trl import GRPOTrainer

from .._errors import CuratorError
from ._core import IndexMap, TicketLedger
from .torch import select_on_rank0, sequence_log_ratios

if TYPE_CHECKING:
    from .._runs import Run
    from ..config import CuratorConfig

__all__ = [
    "CuratorFeedbackCallback",
    "CuratorGRPOMixin",
    "CuratorGRPOTrainer",
    "CuratorRepeatSampler",
    "INDEX_COLUMN",
]

logger = logging.getLogger("curator_client.integrations")

TRL_TESTED = (Version("1.16"), Version("1.17"))
"""The TRL releases this integration is tested with: >= the first, < the second (it
overrides private `GRPOTrainer` methods, which any release may change). Every release in
the range is run by CI (`.ci/run`); today that is 1.16.0 alone (1.15 fails the tests)."""
TRL_RANGE = f"trl>={TRL_TESTED[0]},<{TRL_TESTED[1]}"
ALLOW_UNTESTED_ENV = "CURATOR_ALLOW_UNTESTED_TRL"


def check_trl_version(version: str) -> None:
    """ImportError naming the tested range for a TRL outside it, unless
    CURATOR_ALLOW_UNTESTED_TRL=1 (then a warning): better to fail at import than to train
    on silently wrong log-ratios."""
    if TRL_TESTED[0] <= Version(version) < TRL_TESTED[1]:
        return
    message = (f"curator_client.integrations.trl is tested with {TRL_RANGE} (it overrides "
               f"private GRPOTrainer methods) and found trl {version}")
    if os.environ.get(ALLOW_UNTESTED_ENV, "").strip().lower() in {"1", "true", "yes"}:
        logger.warning("curator: %s; %s is set: trying anyway", message, ALLOW_UNTESTED_ENV)
        return
    raise ImportError(f"{message}: pip install '{TRL_RANGE}', or set "
                      f"{ALLOW_UNTESTED_ENV}=1 to try this version anyway")


check_trl_version(trl.__version__)

INDEX_COLUMN = "curator_index"
"""Column holding each row's dataset index, added to the train dataset."""

ROW_KEY = "curator_row"
"""Key added to TRL's generation batch (log-ratio mode, when TRL keeps no π_old): each
row's position in the process's generation batch, so the loss forward's log-probs of a
shuffled micro-batch can be put back in place."""

_FORWARD_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
                 "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids",
                 "mm_token_type_ids", "image_position_ids")
"""The optional model inputs `GRPOTrainer._compute_loss` passes to its forward."""

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
    """Sends the ledger's complete tickets after each optimizer step (main process).

    `before_report(final=...)`, when given, runs first on every process (the mixin's
    log-ratio pass, which records the results of the generation batches just trained on);
    `final` is True at the end of training.
    """

    def __init__(self, ledger: TicketLedger,
                 before_report: Callable[..., None] | None = None) -> None:
        self.ledger = ledger
        self.before_report = before_report
        self.receipts: list[Any] = []

    def on_step_end(self, args, state, control, **kwargs):
        if self.before_report is not None:
            self.before_report(final=False)
        if state.is_world_process_zero:
            self.receipts.extend(self.ledger.report())
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.before_report is not None:
            self.before_report(final=True)
        if state.is_world_process_zero:
            self.receipts.extend(self.ledger.report(partial=True))
        return control


@dataclass
class _Generation:
    """One generation batch whose results wait for π_new (log-ratio mode)."""

    end_step: int  # TRL's micro-step count (`_step`) once every use of the batch is done
    inputs: dict[str, Any]  # TRL's local generation batch, before its shuffle and split
    local_indices: list[int]  # this process's rows' dataset indices
    indices: list[int]  # every process's rows' dataset indices, in global row order
    rewards: list[float] | None  # main process: each row's weighted reward, global order
    old_logps: torch.Tensor | None  # [n, T] π_old per completion token
    captured: torch.Tensor | None  # [n] rows whose π_old the loss forward gave (else None)


class CuratorGRPOMixin:
    """Put before `GRPOTrainer` (or your subclass of it) in the bases; see the module doc.

    Keyword arguments taken off the trainer's: `curator_run` (a `Run`) or
    `curator_config` (a `CuratorConfig`, as `TrlParser` reads it: the run it names is
    opened or created, and its pool size, log-ratio and metrics settings apply), and
    optionally `curator_id_field` / `curator_id_format` (the bank ↔ dataset mapping,
    positions by default), `curator_pool_size`, `curator_strict` (raise on feedback
    errors), `curator_log_ratios` (send per-rollout log π_new − log π_old with the
    rewards; on by default, False sends rewards only), `curator_metrics_window` (the
    tickets the logged `curator/*` control statistics cover; 0: no requests for them).

    Logging: every training `log` of the trainer carries `curator/*` metrics (model
    version, curator and explore share, zero-signal share, curator vs explore utility,
    select and feedback latency; curator_client/_metrics.py), so each `report_to`
    backend records the curriculum beside the loss.
    """

    curator: TicketLedger
    curator_callback: CuratorFeedbackCallback
    curator_log_ratios: bool = False
    _curator_rewards: tuple[list[int], list[float] | None] | None = None
    _curator_capture: torch.Tensor | None = None
    _curator_generations: list[_Generation]

    def __init__(self, *args: Any, curator_run: Run | None = None,
                 curator_config: CuratorConfig | None = None,
                 curator_id_field: str | None = None,
                 curator_id_format: str | None = None, curator_pool_size: int | None = None,
                 curator_strict: bool = False, curator_log_ratios: bool | None = None,
                 curator_metrics_window: int | None = None, **kwargs: Any) -> None:
        if (curator_run is None) == (curator_config is None):
            raise TypeError("pass curator_run (a Run) or curator_config (a CuratorConfig)")
        if curator_config is not None:
            logger.info("curator: %s", curator_config.public())
            curator_run = curator_config.open_run()
            curator_pool_size = curator_pool_size or curator_config.curator_pool_size
            if curator_log_ratios is None:
                curator_log_ratios = curator_config.curator_log_ratios
            if curator_metrics_window is None:
                curator_metrics_window = curator_config.curator_metrics_window
        curator_log_ratios = True if curator_log_ratios is None else curator_log_ratios
        self.curator_metrics_window = (50 if curator_metrics_window is None
                                       else int(curator_metrics_window))
        self._curator_generations = []
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
        self.curator_log_ratios = bool(curator_log_ratios)
        if self.curator_log_ratios and any(isinstance(m, torch.nn.Dropout) and m.p > 0
                                           for m in self.model.modules()):
            logger.warning("curator: the policy has active dropout, which makes log-ratios "
                           "noisy; pass GRPOConfig(disable_dropout=True)")
        self.curator_callback = CuratorFeedbackCallback(
            self.curator, self._curator_score if self.curator_log_ratios else None)
        self.add_callback(self.curator_callback)

    # -- logging ------------------------------------------------------------------------

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The trainer's own log, with `curator/*` metrics in its training entries."""
        if self.accelerator.is_main_process:
            if self.model.training:
                logs.update(self.curator_metrics())
            else:
                self._curator_send_eval(logs)
        super().log(logs, *args, **kwargs)

    def _curator_send_eval(self, logs: dict[str, float]) -> None:
        """An evaluation's numbers (eval_*) to the run, for the dashboard's comparison."""
        numbers = {k: float(v) for k, v in logs.items()
                   if k.startswith("eval_") and isinstance(v, int | float)
                   and not isinstance(v, bool) and v == v and abs(v) < 1e12}
        if not numbers:
            return
        try:
            self.curator.run.log_metrics(int(self.state.global_step), numbers)
        except CuratorError as exc:
            logger.warning("curator: eval metrics not sent: %s", exc)

    def curator_metrics(self) -> dict[str, float]:
        """`curator/*` numbers for this point of training; never raises (a Curator outage
        leaves only what the trainer itself saw)."""
        run = self.curator.run
        out = {"curator/run_id": float(run.run_id),
               "curator/tickets_dropped": float(self.curator.dropped),
               "curator/results_unmatched": float(self.curator.unmatched)}
        window = self.curator_metrics_window
        try:
            out |= run.metrics(window=window, service=window > 0)
        except CuratorError as exc:
            logger.warning("curator: metrics unavailable: %s", exc)
            out |= run.meter.flat()
        return out

    def _get_train_sampler(self, dataset: Any = None) -> Sampler:
        args = self.args
        return CuratorRepeatSampler(
            self.curator,
            mini_repeat_count=self.num_generations,
            batch_size=args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * args.steps_per_generation,
        )

    # -- rewards (both modes) -----------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions,
                                                      completion_ids_list)
        if self.model.training and inputs and INDEX_COLUMN in inputs[0]:
            if self.curator_log_ratios:  # recorded once π_new is known (_curator_score)
                self._curator_rewards = self._curator_gather_rewards(inputs, rewards_per_func)
            else:
                self._curator_record(inputs, rewards_per_func)
        return rewards_per_func

    def _curator_gather_rewards(self, inputs: list[dict[str, Any]],
                                rewards_per_func: torch.Tensor
                                ) -> tuple[list[int], list[float] | None]:
        """Every process's rows' dataset indices (global order, on every process) and, on
        the main process, each row's weighted reward (NaN: unscorable)."""
        from accelerate.utils import gather_object

        indices = gather_object([int(x[INDEX_COLUMN]) for x in inputs])  # every process
        if not self.accelerator.is_main_process:
            return indices, None
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        totals = (rewards_per_func * weights).nansum(dim=1)
        totals[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")  # unscorable
        return indices, totals.tolist()

    def _curator_record(self, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor
                        ) -> None:
        """Rewards-only mode: record each group's rewards as soon as they are computed."""
        indices, rewards = self._curator_gather_rewards(inputs, rewards_per_func)
        if rewards is not None:
            self._curator_record_rewards(indices, rewards)

    def _curator_record_rewards(self, indices: list[int], rewards: list[float]) -> None:
        """Record each group of `num_generations` consecutive rows' rewards, alone."""
        g = self.num_generations
        for start in range(0, len(indices) - g + 1, g):
            self.curator.record(indices[start], rewards[start:start + g])

    # -- log-ratio mode: keep each generation batch and its π_old -----------------------

    def _generate_and_score_completions(self, inputs):
        self._curator_rewards = None
        output = super()._generate_and_score_completions(inputs)
        stash, self._curator_rewards = self._curator_rewards, None
        if stash is None:  # rewards-only mode, evaluation, or rows without an index
            return output
        indices, rewards = stash
        n = output["completion_ids"].size(0)
        every = self.args.steps_per_generation * self.num_iterations
        old = output.get("old_per_token_logps")
        gen = _Generation(end_step=(self._step // every + 1) * every, inputs=dict(output),
                          local_indices=[int(x[INDEX_COLUMN]) for x in inputs],
                          indices=list(indices), rewards=rewards,
                          old_logps=None if old is None else old.detach(), captured=None)
        if old is None:
            # TRL kept no π_old: the batch is trained on before any update, and the loss
            # forward's log-probs are π_old. Tag the rows to put them back after shuffling.
            device = output["completion_ids"].device
            gen.old_logps = torch.zeros(output["completion_mask"].shape, dtype=torch.float32,
                                        device=device)
            gen.captured = torch.zeros(n, dtype=torch.bool, device=device)
            output[ROW_KEY] = torch.arange(n, device=device)
        self._curator_generations.append(gen)
        while len(self._curator_generations) > self.curator.max_pending:
            self._curator_give_up(self._curator_generations.pop(0))
        return output

    def _compute_loss(self, model, inputs):
        rows = inputs.get(ROW_KEY) if self._curator_generations else None
        self._curator_capture = rows
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._curator_capture = None

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        rows, self._curator_capture = self._curator_capture, None
        if rows is not None:  # the policy forward of _compute_loss, on a tagged micro-batch
            gen = self._curator_generations[-1]
            if gen.captured is not None:
                rows = rows.to(gen.captured.device)
                fresh = ~gen.captured[rows]  # num_iterations > 1: keep the first pass
                gen.old_logps[rows[fresh]] = out[0].detach()[fresh.to(out[0].device)].to(
                    gen.old_logps)
                gen.captured[rows] = True
        return out

    # -- log-ratio mode: π_new after the last optimizer step on a batch -----------------

    def _curator_score(self, *, final: bool = False) -> None:
        """Record the results of every generation batch trained on in full (all of them
        when `final`): rewards and log-ratios. Runs on every process (one forward over
        the process's rows, one gather), from the callback after each optimizer step."""
        ready = 0
        for gen in self._curator_generations:
            if not (final or gen.end_step <= self._step):
                break
            ready += 1
        done, self._curator_generations = (self._curator_generations[:ready],
                                           self._curator_generations[ready:])
        for gen in done:
            self._curator_send(gen, self._curator_local_log_ratios(gen))

    def _curator_local_log_ratios(self, gen: _Generation) -> list[float | None]:
        n = len(gen.local_indices)
        if gen.old_logps is None or (gen.captured is not None and not bool(gen.captured.any())):
            return [None] * n  # no π_old (a loss that bypasses _compute_loss)
        inputs = gen.inputs
        new = self._curator_policy_logps(inputs)
        mask = inputs["completion_mask"]
        if inputs.get("tool_mask") is not None:
            mask = mask * inputs["tool_mask"]
        ratios = sequence_log_ratios(new, gen.old_logps.to(new.device), mask.to(new.device))
        usable = [True] * n if gen.captured is None else gen.captured.tolist()
        return [r if ok else None for r, ok in zip(ratios.tolist(), usable)]

    def _curator_policy_logps(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Per-token log-probs of the completions under the current policy: TRL's own
        forward (same temperature, fused head and autocast), without gradients, in train
        mode as TRL's forwards run (dropout alike), gradient checkpointing off."""
        from trl.models.utils import disable_gradient_checkpointing

        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        extra = {k: inputs[k] for k in _FORWARD_KEYS if inputs.get(k) is not None}
        model = self.model
        was_training = model.training
        model.train()
        try:
            with torch.no_grad(), disable_gradient_checkpointing(
                    model, self.args.gradient_checkpointing_kwargs):
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, inputs["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size, **extra)
        finally:
            model.train(was_training)
        return logps

    def _curator_send(self, gen: _Generation, ratios: list[float | None]) -> None:
        """Gather (dataset index, global row, log-ratio) to the main process and record
        each group's rewards with its log-ratios (rewards only where one is missing)."""
        from accelerate.utils import gather_object

        n = len(gen.local_indices)
        base = self.accelerator.process_index * n
        rows = gather_object([(i, base + r, lr) for r, (i, lr)
                              in enumerate(zip(gen.local_indices, ratios))])
        if not self.accelerator.is_main_process or gen.rewards is None:
            return
        by_row = {int(row): (int(index), lr) for index, row, lr in rows}
        g = self.num_generations
        for start in range(0, len(gen.indices) - g + 1, g):
            group = range(start, start + g)
            got = [by_row.get(k) for k in group]
            if any(x is not None and x[0] != gen.indices[k] for x, k in zip(got, group)):
                logger.warning("curator: rows of problem index %d are out of place; "
                               "sending its rewards without log-ratios", gen.indices[start])
                got = [None]
            log_ratios = ([x[1] for x in got] if all(x is not None and x[1] is not None
                                                     for x in got) else None)
            self.curator.record(gen.indices[start], gen.rewards[start:start + g], log_ratios)

    def _curator_give_up(self, gen: _Generation) -> None:
        """A generation batch never trained through (more than max_pending waiting):
        send its rewards alone."""
        logger.warning("curator: generation batch never completed its optimizer steps; "
                       "sending its rewards without log-ratios")
        if gen.rewards is not None:
            self._curator_record_rewards(gen.indices, gen.rewards)


class CuratorGRPOTrainer(CuratorGRPOMixin, GRPOTrainer):
    """`GRPOTrainer` whose training prompts come from a Curator run (see the module doc)."""

"""verl: a curriculum sampler that asks a Curator run for each step's prompts.

verl (0.5 – 0.7.x; the hook was removed in 0.8) loads a sampler named in the data config
when `data.sampler.class_path` is set, calls `iter()` on it through its train
`StatefulDataLoader` (batch size `data.gen_batch_size`, else `data.train_batch_size`),
and, if the sampler is an `AbstractCurriculumSampler`, calls `update(batch)` once per
training step on the driver with the step's `DataProto`, after advantages and the actor
update. Configure it with Hydra overrides:

    data.sampler.class_path=pkg://curator_client.integrations.verl
    data.sampler.class_name=CuratorCurriculumSampler
    data.dataloader_num_workers=0                  # verl requires 0 with a curriculum
    +data.sampler.curator.url=http://curator:8000
    +data.sampler.curator.run_id=7
    # optional: +data.sampler.curator.{pool_size,id_field,id_format,reward_key,strict}

The run token is read from `CURATOR_RUN_TOKEN` (keep it out of the config: verl logs the
whole config); `CURATOR_URL`, `CURATOR_RUN_ID`, `CURATOR_POOL_SIZE` work as well.

Each iteration step selects `batch_size` problems (one ticket) and yields their dataset
indices; `update(batch)` turns the step's batch into feedback and sends it (the ticket's
problems that did not reach the batch, e.g. dropped by a group filter, are left out).

Batch → feedback (`results_from_batch`):

| feedback            | from the `DataProto` at `update` time                                 |
|---------------------|-----------------------------------------------------------------------|
| problem             | `non_tensor_batch[id_field]` per row ("extra_info.index" by default:  |
|                     | verl's data preprocessors write the row's index there), mapped to the |
|                     | bank's external id `id_format.format(value)`                          |
| group (GRPO)        | rows sharing `non_tensor_batch["uid"]` (the `rollout.n` responses of  |
|                     | one prompt); row order does not matter (balance_batch reorders rows)  |
| `rewards[i]`        | `batch[reward_key].sum(-1)`: "token_level_scores" (the task reward,   |
|                     | before any KL penalty), else "token_level_rewards"                    |
| `log_ratios[i]`     | mean over `response_mask` of `batch["log_probs"] - batch["old_log_probs"]`|
|                     | when the batch holds both; stock verl does not recompute log-probs    |
|                     | after the actor update, so by default only rewards are sent and the   |
|                     | service falls back to mean abs(A) (store the updated policy's         |
|                     | log-probs as "log_probs" to get Û = mean A·s)                         |

Advantages are not sent: the service recomputes GRPO's A_i = (r_i − mean r)/(std r + ε)
from the rewards, which also feed the per-problem pass-rate statistics.

Mapping: the bank's external ids must be `id_format.format(row[id_field])` for the rows
of verl's train files, e.g. built with `add_dataset(..., id_field="extra_info.index")`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._client import Client
from .._models import FeedbackReceipt
from ._core import IndexMap, TicketLedger, get_field

logger = logging.getLogger("curator_client.integrations.verl")

try:  # verl <= 0.7: the interface verl checks with isinstance before calling update()
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _Base

    VERL_INTERFACE = True
except ImportError:  # no verl, or verl >= 0.8: same shape, so the sampler still works alone
    from abc import abstractmethod

    from torch.utils.data import Sampler

    class _Base(Sampler[int]):  # type: ignore[no-redef]
        @abstractmethod
        def update(self, batch: Any) -> None: ...

    VERL_INTERFACE = False

__all__ = [
    "CuratorCurriculumSampler",
    "GroupResult",
    "VERL_INTERFACE",
    "results_from_batch",
]

DEFAULT_ID_FIELD = "extra_info.index"


@dataclass(frozen=True)
class GroupResult:
    """One prompt's rollouts in a verl batch: its id value, rewards, log-ratios."""

    id_value: Any
    rewards: list[float]
    log_ratios: list[float] | None = None


def _row_ids(non_tensor: Mapping[str, Any], id_field: str) -> list[Any]:
    if id_field in non_tensor:
        return list(non_tensor[id_field])
    top, _, rest = id_field.partition(".")
    if top not in non_tensor or not rest:
        raise KeyError(f"the batch has no non-tensor field {id_field!r} "
                       f"(has: {sorted(non_tensor)})")
    return [get_field(row, rest) for row in non_tensor[top]]


def results_from_batch(
    batch: Any,
    *,
    id_field: str = DEFAULT_ID_FIELD,
    reward_key: str | None = None,
    log_prob_key: str = "log_probs",
    old_log_prob_key: str = "old_log_probs",
    mask_key: str = "response_mask",
) -> list[GroupResult]:
    """Group a verl `DataProto`'s rows by uid into per-prompt rewards (+ log-ratios).

    See the module docstring for which fields are read. Groups come out in the order of
    their first row.
    """
    tensors = batch.batch
    keys = set(tensors.keys())
    if reward_key is None:
        reward_key = "token_level_scores" if "token_level_scores" in keys else "token_level_rewards"
    if reward_key not in keys:
        raise KeyError(f"the batch has no reward tensor {reward_key!r} (has: {sorted(keys)})")
    scores = tensors[reward_key]
    scores = scores.sum(dim=-1) if scores.dim() > 1 else scores
    rewards = [float(x) for x in scores.tolist()]
    n = len(rewards)
    log_ratios: list[float] | None = None
    if log_prob_key in keys and old_log_prob_key in keys:
        diff = tensors[log_prob_key].float() - tensors[old_log_prob_key].float()
        if mask_key in keys:
            mask = tensors[mask_key].to(diff.dtype)
        else:
            mask = tensors["attention_mask"][:, -diff.shape[-1]:].to(diff.dtype)
        log_ratios = ((diff * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).tolist()
    non_tensor = batch.non_tensor_batch
    uids = list(non_tensor["uid"])
    ids = _row_ids(non_tensor, id_field)
    if not len(uids) == len(ids) == n:
        raise ValueError(f"batch rows disagree: {n} rewards, {len(uids)} uids, {len(ids)} ids")
    groups: dict[Any, tuple[Any, list[float], list[float]]] = {}
    for row in range(n):
        entry = groups.setdefault(uids[row], (ids[row], [], []))
        if entry[0] != ids[row]:
            raise ValueError(f"rows of uid {uids[row]!r} name different problems "
                             f"({entry[0]!r} and {ids[row]!r})")
        entry[1].append(rewards[row])
        if log_ratios is not None:
            entry[2].append(float(log_ratios[row]))
    return [GroupResult(v, r, lr if log_ratios is not None else None)
            for v, r, lr in groups.values()]


def _setting(cfg: Any, key: str, env: str | None = None, default: Any = None) -> Any:
    value = cfg.get(key) if cfg is not None else None
    if value is None and env is not None:
        value = os.environ.get(env) or None
    return default if value is None else value


class CuratorCurriculumSampler(_Base):
    """verl curriculum sampler backed by a Curator run (see the module docstring).

    `client` is for tests and custom trainers; verl constructs it with
    `(data_source, data_config)` only.
    """

    def __init__(self, data_source: Any, data_config: Any, *, client: Client | None = None
                 ) -> None:
        sampler_cfg = data_config.get("sampler") or {}
        cfg = sampler_cfg.get("curator") or {}
        url = _setting(cfg, "url", "CURATOR_URL")
        run_id = _setting(cfg, "run_id", "CURATOR_RUN_ID")
        if client is None and url is None:
            raise ValueError("set data.sampler.curator.url (or CURATOR_URL)")
        if run_id is None:
            raise ValueError("set data.sampler.curator.run_id (or CURATOR_RUN_ID)")
        token = _setting(cfg, "token", "CURATOR_RUN_TOKEN")
        pool_size = _setting(cfg, "pool_size", "CURATOR_POOL_SIZE")
        self.id_field = str(_setting(cfg, "id_field", default=DEFAULT_ID_FIELD))
        self.reward_key = _setting(cfg, "reward_key")
        self.client = client if client is not None else Client(str(url), token=token)
        self.run = self.client.run(int(run_id), token)
        self.batch_size = int(data_config.get("gen_batch_size") or data_config.train_batch_size)
        self.index_map = IndexMap.from_dataset(data_source, self.id_field,
                                               _setting(cfg, "id_format", default="{}"))
        self.ledger = TicketLedger(self.run, self.index_map,
                                   pool_size=None if pool_size is None else int(pool_size),
                                   strict=bool(_setting(cfg, "strict", default=False)))
        self.steps_per_epoch = len(self.index_map) // self.batch_size
        self.receipts: list[FeedbackReceipt] = []
        self._steps_done = 0  # steps of the current epoch already selected
        self._resume_at = 0

    def __iter__(self) -> Iterator[int]:
        self._steps_done, self._resume_at = self._resume_at, 0
        while self._steps_done < self.steps_per_epoch:
            indices = self.ledger.select(self.batch_size)
            self._steps_done += 1
            yield from indices

    def state_dict(self) -> dict[str, int]:
        """Saved by verl's StatefulDataLoader with its checkpoints: having it means a
        resume continues the epoch instead of replaying (and re-selecting) its steps."""
        return {"steps_done": self._steps_done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._resume_at = int(state.get("steps_done", 0))

    def __len__(self) -> int:
        return self.steps_per_epoch * self.batch_size

    def update(self, batch: Any) -> None:
        """Send the step's rewards (and log-ratios when present) for its ticket(s)."""
        for group in results_from_batch(batch, id_field=self.id_field,
                                        reward_key=self.reward_key):
            try:
                index = self.index_map.index_of_value(group.id_value)
            except KeyError as exc:
                self.ledger.unmatched += 1
                logger.warning("curator: %s", exc.args[0])
                continue
            self.ledger.record(index, group.rewards, group.log_ratios)
        self.receipts = self.ledger.report(partial=True)

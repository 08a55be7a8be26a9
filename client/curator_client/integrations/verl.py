"""verl: a curriculum sampler that asks a Curator run for each step's prompts, and the
hook that adds the updated actor's log-probs so the service gets log-ratios.

Versions. The curriculum hook is in the verl releases 0.5.0, 0.6.0, 0.6.1, 0.7.0 and 0.7.1:
`create_rl_sampler` (verl.trainer.main_ppo) loads the class named by
`data.sampler.class_path`/`class_name` with `(data_source, data_config)` in the TaskRunner
process, iterates it through the train `StatefulDataLoader` (batch size
`data.gen_batch_size`, else `data.train_batch_size`), and `RayPPOTrainer.fit` calls
`sampler.update(batch=batch)` (keyword `batch`, no step number, in all of those releases)
once per step, after the advantages and the actor update, provided the sampler is an
`AbstractCurriculumSampler` (verl.experimental.dataset.sampler). The batch is the
`DataProto` object the actor was updated with: `batch = batch.union(...)` returns the batch
itself, and nothing rebinds `batch` after the update. verl 0.8.0 removed the `data.sampler`
config, that module and the `update` call: Hydra rejects `data.sampler.class_path=...`
there (no such key). `update` here also takes `update(batch, step_num)` and
`update(batch=..., step_num=...)` (forks and custom trainers that pass a step; other
keywords are ignored); the step is not needed, rows are matched to tickets by problem.

Configure it with Hydra overrides of `python -m verl.trainer.main_ppo`:

    data.sampler.class_path=pkg://curator_client.integrations.verl
    data.sampler.class_name=CuratorCurriculumSampler
    data.dataloader_num_workers=0                  # verl requires 0 with a curriculum
    +data.sampler.curator.url=http://curator:8000
    +data.sampler.curator.run_id=7
    +data.sampler.curator.post_update_log_probs=true   # log-ratios (see below)
    # optional: +data.sampler.curator.{pool_size,id_field,id_format,reward_key,strict,
    #                                   log_metrics,metrics_window}: docs/integrations.md

The run token is read from `CURATOR_RUN_TOKEN` (keep it out of the config: verl logs the
whole config); `CURATOR_URL`, `CURATOR_RUN_ID`, `CURATOR_POOL_SIZE` and
`CURATOR_POST_UPDATE_LOG_PROBS` work as well.

Each iteration step selects `batch_size` problems (one ticket) and yields their dataset
indices; `update(batch)` turns the step's batch into feedback and sends it (the ticket's
problems that did not reach the batch, e.g. dropped by a group filter, are left out).

Log-ratios: π_new after the actor update. The Actor-Curator utility Û = mean A·s needs,
per rollout, the mean over its response tokens of log π_new − log π_old. Stock verl has
π_old in the batch ("old_log_probs": recomputed by the actor before the update, or the
rollout's own in bypass mode) but never evaluates the updated actor, so a stock run sends
rewards only and the service falls back to its weaker rewards-only signal (the run's
stats say `utility_fallback`). With `post_update_log_probs=true` the sampler, when verl
builds it (in the TaskRunner process, before the trainer), wraps
`RayPPOTrainer.init_workers` so that once the workers exist every actor update is
followed by one log-prob pass of the updated actor over the same batch, stored in place
as `batch.batch["log_probs"]` (verl returns it as "old_log_probs" + "entropys"; only the
log-probs are kept). This is what the paper's verl fork does for its `perf_diff`:

- verl 0.7.x: `trainer._update_actor(batch)`, then `trainer._compute_old_log_prob(batch)`,
  verl's own call for "old_log_probs" (legacy and new worker implementations alike; the
  batch's `meta_info["temperature"]` is the rollout temperature, as for π_old);
- verl 0.5 / 0.6: `actor_rollout_wg.update_actor(batch)`, then
  `actor_rollout_wg.compute_log_prob(batch)` (the worker sets micro-batch size, max token
  length, dynamic bsz and temperature from `actor_rollout_ref.rollout`, as for π_old).

The cost is one more forward pass of the actor per step (the size of verl's old-log-prob
pass), before the weights go to the rollout engine. Steps before
`trainer.critic_warmup` update no actor and send rewards only. In bypass mode the
log-ratio is against the rollout engine's log-probs (it includes the engine mismatch).
Only `RayPPOTrainer` and subclasses that keep its `init_workers` and `fit`'s
`_update_actor` (0.7) / `actor_rollout_wg.update_actor` (0.5–0.6) calls are covered.
Entry points that build the trainer themselves can instead use `CuratorRayPPOTrainer`
(verl's `RayPPOTrainer` with the hook, created when first imported; an ImportError that
says so when verl is missing) or call `attach_post_update_log_probs(trainer)` after
`trainer.init_workers()`. tests/integrations/test_verl.py runs the hook on CPU with a fake
actor worker group through the `RayPPOTrainer` methods of verl 0.5.0, 0.6.1 and 0.7.1 (0.7's
legacy-worker path; `use_legacy_worker_impl=disable` goes through the same
`_compute_old_log_prob` but is not exercised there).

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
|                     | when the batch holds both (with `post_update_log_probs`), else none   |

Advantages are not sent: the service recomputes GRPO's A_i = (r_i − mean r)/(std r + ε)
from the rewards, which also feed the per-problem pass-rate statistics.

Mapping: the bank's external ids must be `id_format.format(row[id_field])` for the rows
of verl's train files, e.g. built with `add_dataset(..., id_field="extra_info.index")`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._client import Client
from .._errors import CuratorError
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
    "attach_post_update_log_probs",
    "install_post_update_log_probs",
    "install_tracking_metrics",
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


# -- post-update log-probs ------------------------------------------------------------------

POST_UPDATE_KEY = "log_probs"
_ATTACHED = "_curator_post_update_log_probs"
_WRAPPED = "_curator_post_update_log_probs_wrapped"


def _verl_trainer_class() -> type:
    try:
        from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    except ImportError as exc:
        raise ImportError(
            "post-update log-probs hook into verl's RayPPOTrainer, and importing "
            f"verl.trainer.ppo.ray_trainer failed ({exc}): install verl 0.5-0.7.x in the "
            "trainer's environment (pip install 'curator-client[verl]')") from exc
    return RayPPOTrainer


def post_update_log_probs(trainer: Any, batch: Any) -> Any:
    """The actor's log-probs of `batch`'s responses, computed now: (rows, response length).

    verl 0.7 (`trainer._compute_old_log_prob`, either worker implementation), else
    `trainer.actor_rollout_wg.compute_log_prob(batch)` (verl 0.5 / 0.6). Both return the
    values as "old_log_probs" whatever the policy is; called after the update it is π_new.
    """
    compute = getattr(trainer, "_compute_old_log_prob", None)
    if callable(compute):
        output = compute(batch)
        if isinstance(output, tuple):  # (DataProto, mfu)
            output = output[0]
    else:
        output = trainer.actor_rollout_wg.compute_log_prob(batch)
    log_probs = output.batch["old_log_probs"]
    rows = len(batch)
    if log_probs.shape[0] != rows:
        raise ValueError(f"compute_log_prob returned {log_probs.shape[0]} rows for a batch "
                         f"of {rows}")
    return log_probs.float()


def attach_post_update_log_probs(trainer: Any, *, key: str = POST_UPDATE_KEY) -> Any:
    """Make `trainer` store, after each actor update, the updated actor's log-probs of the
    batch it was updated with as `batch.batch[key]`; returns `trainer`.

    Wraps the instance's `_update_actor` (verl 0.7) or, without one, its worker group's
    `update_actor` (verl 0.5 / 0.6: call this after `trainer.init_workers()`). Calling it
    again is a no-op.
    """
    if trainer.__dict__.get(_ATTACHED):
        return trainer

    def wrap(update: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(update)
        def update_then_log_probs(batch: Any, *args: Any, **kwargs: Any) -> Any:
            output = update(batch, *args, **kwargs)
            batch.batch[key] = post_update_log_probs(trainer, batch)
            return output
        return update_then_log_probs

    if callable(getattr(trainer, "_update_actor", None)):
        trainer._update_actor = wrap(trainer._update_actor)
    else:
        group = getattr(trainer, "actor_rollout_wg", None)
        if group is None:
            raise RuntimeError("the trainer has no actor_rollout_wg yet: attach the "
                               "post-update log-probs after trainer.init_workers()")
        group.update_actor = wrap(group.update_actor)
    trainer.__dict__[_ATTACHED] = True
    return trainer


def install_post_update_log_probs(trainer_class: type | None = None, *,
                                  key: str = POST_UPDATE_KEY) -> type:
    """Wrap `trainer_class.init_workers` (verl's `RayPPOTrainer` by default, which its
    subclasses inherit) so that every trainer of this process built afterwards gets
    `attach_post_update_log_probs` once its workers exist. Idempotent; returns the class.

    This is what `data.sampler.curator.post_update_log_probs=true` does: verl builds the
    sampler in the TaskRunner process before the trainer, so the patch is in place there.
    """
    cls = _verl_trainer_class() if trainer_class is None else trainer_class
    current = cls.init_workers
    if getattr(current, _WRAPPED, False):
        return cls

    @functools.wraps(current)
    def init_workers(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = current(self, *args, **kwargs)
        attach_post_update_log_probs(self, key=key)
        return result

    setattr(init_workers, _WRAPPED, True)
    cls.init_workers = init_workers
    logger.info("curator: %s.init_workers now adds the updated actor's log-probs to each "
                "step's batch", cls.__name__)
    return cls


_TRACKED = "_curator_metrics_sources"


def install_tracking_metrics(sampler: CuratorCurriculumSampler,
                             tracking_class: type | None = None) -> type:
    """Wrap `tracking_class.log` (verl's `verl.utils.tracking.Tracking` by default) so
    that every step's metrics dict that `RayPPOTrainer.fit` hands to verl's tracking
    (console, W&B, MLflow, SwanLab, TensorBoard…) carries the sampler's `curator/*`
    metrics, sent in the same call. Idempotent per class; several samplers add theirs.

    fit builds its `Tracking` inside `fit` and logs a local dict after `sampler.update`,
    so the class is the one place to reach; this is what `data.sampler.curator.
    log_metrics` (on by default) does when verl builds the sampler, in the same process.
    """
    if tracking_class is None:
        from verl.utils.tracking import Tracking as tracking_class  # type: ignore[no-redef]
    sources: list[CuratorCurriculumSampler] | None = getattr(tracking_class, _TRACKED, None)
    if sources is None:
        sources = []
        current = tracking_class.log

        @functools.wraps(current)
        def log(self: Any, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            for source in getattr(type(self), _TRACKED, []):
                data.update(source.metrics())
            return current(self, data, *args, **kwargs)

        tracking_class.log = log
        setattr(tracking_class, _TRACKED, sources)
    if sampler not in sources:
        sources.append(sampler)
    return tracking_class


_TRAINER_CLASSES: dict[type, type] = {}


def _curator_trainer_class() -> type:
    base = _verl_trainer_class()
    if base not in _TRAINER_CLASSES:
        class CuratorRayPPOTrainer(base):  # type: ignore[misc, valid-type]
            """verl's `RayPPOTrainer` that stores the updated actor's log-probs in each
            step's batch as "log_probs" (see `attach_post_update_log_probs`)."""

            def init_workers(self, *args: Any, **kwargs: Any) -> Any:
                result = super().init_workers(*args, **kwargs)
                attach_post_update_log_probs(self)
                return result

        CuratorRayPPOTrainer.__module__ = __name__
        CuratorRayPPOTrainer.__qualname__ = "CuratorRayPPOTrainer"  # pickles by reference
        _TRAINER_CLASSES[base] = CuratorRayPPOTrainer
    return _TRAINER_CLASSES[base]


def __getattr__(name: str) -> Any:
    # `CuratorRayPPOTrainer` subclasses verl's trainer, so it is built when first asked for:
    # this module imports without verl (or Ray), and says what is missing when it is.
    if name == "CuratorRayPPOTrainer":
        return _curator_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _setting(cfg: Any, key: str, env: str | None = None, default: Any = None) -> Any:
    value = cfg.get(key) if cfg is not None else None
    if value is None and env is not None:
        value = os.environ.get(env) or None
    return default if value is None else value


class CuratorCurriculumSampler(_Base):
    """verl curriculum sampler backed by a Curator run (see the module docstring).

    `client` and `trainer_class` (the class `post_update_log_probs` patches, verl's
    `RayPPOTrainer` by default) are for tests and custom trainers; verl constructs it with
    `(data_source, data_config)` only.
    """

    def __init__(self, data_source: Any, data_config: Any, *, client: Client | None = None,
                 trainer_class: type | None = None,
                 tracking_class: type | None = None) -> None:
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
        self.post_update_log_probs = _flag(_setting(cfg, "post_update_log_probs",
                                                    "CURATOR_POST_UPDATE_LOG_PROBS", False))
        self._warned_no_log_probs = False
        self.metrics_window = int(_setting(cfg, "metrics_window", default=50))
        if _flag(_setting(cfg, "log_metrics", default=True)):
            try:
                install_tracking_metrics(self, tracking_class)
            except ImportError:  # no verl here (a test, or the sampler used alone)
                logger.info("curator: verl's tracking not importable; call "
                            "sampler.metrics() to log curator/* metrics")
        if self.post_update_log_probs:
            install_post_update_log_probs(trainer_class)
        else:
            logger.info("curator: rewards only (the service falls back from Û = mean A·s); "
                        "set +data.sampler.curator.post_update_log_probs=true to send the "
                        "updated actor's log-ratios")

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

    def metrics(self) -> dict[str, float]:
        """`curator/*` numbers for this step (curator_client/_metrics.py): what the sampler
        saw of its selects and feedback and, with `metrics_window` > 0, the service's
        view. Never raises: a Curator outage leaves the sampler's own numbers."""
        out = {"curator/run_id": float(self.run.run_id),
               "curator/tickets_dropped": float(self.ledger.dropped),
               "curator/results_unmatched": float(self.ledger.unmatched)}
        try:
            out |= self.run.metrics(window=self.metrics_window,
                                    service=self.metrics_window > 0)
        except CuratorError as exc:
            logger.warning("curator: metrics unavailable: %s", exc)
            out |= self.run.meter.flat()
        return out

    def update(self, batch: Any = None, step_num: int | None = None, **kwargs: Any) -> None:
        """Send the step's rewards (and log-ratios when present) for its ticket(s).

        verl 0.5-0.7.1 call `update(batch=batch)`; `update(batch, step_num)` and keyword
        forms are accepted too (the step is not needed: rows are matched to tickets by
        problem).
        """
        if batch is None:
            raise TypeError("update() needs the step's batch (a verl DataProto)")
        if (self.post_update_log_probs and not self._warned_no_log_probs
                and POST_UPDATE_KEY not in set(batch.batch.keys())):
            self._warned_no_log_probs = True
            logger.warning("curator: post_update_log_probs is on but this step's batch has "
                           "no %r (no actor update this step, e.g. critic warm-up, or a "
                           "trainer the hook does not reach): sending rewards only",
                           POST_UPDATE_KEY)
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

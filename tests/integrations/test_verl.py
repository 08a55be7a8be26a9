"""verl's curriculum sampler, driven the way verl 0.5-0.7's RayPPOTrainer drives it, against
a real running service.

Two kits run the same step loop (`_fit`, a transcription of `RayPPOTrainer.fit`'s data
path: loader → uid per prompt → repeat(rollout.n, interleave) → rewards, response mask,
old log-probs → GRPO advantages → balance_batch's reorder → `sampler.update(batch)`):

- `standin`: verl is not installed in this project's venv (it pins numpy<2), so a faithful
  local stand-in of the pieces the sampler touches: `RLHFDataset.__getitem__` rows (with
  `.dataframe`), `collate_fn`, and a `DataProto` (tensor `batch`, numpy `non_tensor_batch`,
  `repeat`, `reorder`).
- `real`: verl's own `create_rl_sampler` (it loads the class from `data.sampler.class_path`
  and checks `AbstractSampler`), `RLHFDataset` over a parquet file, `collate_fn`,
  `StatefulDataLoader`, `DataProto` and `compute_grpo_outcome_advantage`. Runs only where a
  verl with the interface (0.5-0.7.x) is importable; skipped here otherwise.

The post-update log-probs (π_new) are checked the same two ways: stand-in trainers shaped
like verl 0.5/0.6's (`fit` calls `actor_rollout_wg.update_actor`) and 0.7's (`fit` calls
`self._update_actor`, π_old from `self._compute_old_log_prob`), and, with verl, verl's own
`RayPPOTrainer._update_actor` / `_compute_old_log_prob`; in all of them the actor worker
group is a fake one over a tiny deterministic policy, and the test reads the log-ratios
the service stored back from its database.

To run the `real` cases (they pass with verl 0.5.0, 0.6.1 and 0.7.1): a throwaway venv
that sees this project's venv behind its own packages, e.g.
    python3 -m venv /tmp/verlvenv && cd /tmp/verlvenv && bin/pip install torch==2.13.0
    bin/pip install --no-deps verl==0.7.1
    bin/pip install ray tensordict==0.10.0 omegaconf hydra-core torchdata codetiming aiohttp peft
    (and "transformers<5" "datasets<4.1" for verl 0.5 / 0.6), then a .pth file in its
    site-packages with `import site; site.addsitedir('<this repo>/.venv/lib/python3.11/
    site-packages')` and `/tmp/verlvenv/bin/python -m pytest tests/integrations/test_verl.py`.
verl pins numpy<2; its DataProto and trainer methods work with this project's numpy 2.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import types
import uuid
from collections import defaultdict
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from curator_client.integrations.datasets import add_dataset  # noqa: E402
from tests.integrations.helpers import tiny_causal_lm, wait_applied  # noqa: E402

N_ROLLOUTS = 4
RESPONSE_LEN = 6
VOCAB = 11


def _verl_rows(n: int) -> list[dict]:
    """Rows as verl's data preprocessing scripts write them (gsm8k.py and friends)."""
    rows = []
    for i in range(n):
        a, b = i % 10, (3 * i) % 10
        rows.append({
            "data_source": "arith",
            "prompt": [{"role": "user", "content": f"What is {a}+{b}?"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": "train", "index": 1000 + i},  # not the row position
        })
    return rows


# -- the stand-in kit ---------------------------------------------------------------------


class _Cfg(dict):
    """DictConfig's reading surface: `.get` and attribute access."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Cfg(value) if isinstance(value, dict) else value


class _StandinDataProto:
    def __init__(self, batch: dict, non_tensor_batch: dict, meta_info: dict | None = None):
        self.batch = batch
        self.non_tensor_batch = non_tensor_batch
        self.meta_info = meta_info or {}

    @classmethod
    def from_single_dict(cls, data: dict, meta_info: dict | None = None):
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
        return cls(tensors, others, meta_info)

    def __len__(self) -> int:
        column = next(iter(self.non_tensor_batch.values()), None)
        if column is None:
            column = next(iter(self.batch.values()))
        return len(column)

    def repeat(self, repeat_times: int, interleave: bool = True):
        assert interleave
        return _StandinDataProto(
            {k: v.repeat_interleave(repeat_times, dim=0) for k, v in self.batch.items()},
            {k: np.repeat(v, repeat_times, axis=0) for k, v in self.non_tensor_batch.items()})

    def union(self, other):  # in place and returns self, as verl's
        self.batch.update(other.batch)
        self.non_tensor_batch.update(other.non_tensor_batch)
        self.meta_info.update(other.meta_info)
        return self

    def reorder(self, indices: torch.Tensor) -> None:
        self.batch = {k: v[indices] for k, v in self.batch.items()}
        idx = indices.numpy()
        self.non_tensor_batch = {k: v[idx] for k, v in self.non_tensor_batch.items()}


class _StandinRLHFDataset(torch.utils.data.Dataset):
    """`RLHFDataset.__getitem__` of verl 0.7: the parquet row plus raw_prompt, index, a
    dummy tensor; the rows as a `datasets.Dataset` in `.dataframe`."""

    def __init__(self, rows: list[dict]):
        datasets = pytest.importorskip("datasets")
        self.dataframe = datasets.Dataset.from_list(rows)

    def __len__(self) -> int:
        return len(self.dataframe)

    def __getitem__(self, item: int) -> dict:
        row = dict(self.dataframe[item])
        row["raw_prompt"] = row["prompt"]
        row["dummy_tensor"] = torch.tensor([0], dtype=torch.uint8)
        row["index"] = row.get("extra_info", {}).get("index", 0)
        return row


def _standin_collate(data_list: list[dict]) -> dict:
    tensors, others = defaultdict(list), defaultdict(list)
    for data in data_list:
        for key, val in data.items():
            (tensors if isinstance(val, torch.Tensor) else others)[key].append(val)
    out = {k: torch.stack(v) for k, v in tensors.items()}
    out.update({k: np.fromiter(v, dtype=object, count=len(v)) for k, v in others.items()})
    return out


def _grpo_advantages(scores: torch.Tensor, uids: np.ndarray, eps: float = 1e-6):
    by_uid = defaultdict(list)
    for i, u in enumerate(uids):
        by_uid[u].append(i)
    adv = torch.zeros_like(scores)
    for rows in by_uid.values():
        s = scores[rows]
        adv[rows] = (s - s.mean()) / (s.std() + eps) if len(rows) > 1 else 0.0
    return adv


def _standin_kit(tmp_path, rows, data_config):
    from curator_client.integrations.verl import CuratorCurriculumSampler

    dataset = _StandinRLHFDataset(rows)
    sampler = CuratorCurriculumSampler(data_source=dataset, data_config=data_config)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=data_config.get("gen_batch_size", data_config.train_batch_size),
        num_workers=data_config["dataloader_num_workers"], drop_last=True,
        collate_fn=_standin_collate, sampler=sampler)
    return SimpleNamespace(sampler=sampler, loader=loader, DataProto=_StandinDataProto,
                           advantages=_grpo_advantages, curriculum_base=None)


# -- the real-verl kit ------------------------------------------------------------------------


def _real_kit(tmp_path, rows, data_config):
    pytest.importorskip("verl.experimental.dataset.sampler",
                        reason="needs verl 0.5-0.7.x (the curriculum-sampler interface)")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl import DataProto
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler
    from verl.trainer.main_ppo import create_rl_sampler
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    config = OmegaConf.create({**data_config, "filter_overlong_prompts": False,
                               "cache_dir": str(tmp_path / "cache"), "shuffle": False})
    OmegaConf.set_struct(config, True)  # as Hydra hands it over: unknown keys read as None
    # 0.7's RLHFDataset leaves tokenizing to the agent loop; 0.5/0.6's tokenizes each row
    _, tokenizer = tiny_causal_lm()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    dataset = RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, processor=None,
                          config=config)
    sampler = create_rl_sampler(config, dataset)  # verl loads our class from class_path
    loader = StatefulDataLoader(
        dataset=dataset, batch_size=config.get("gen_batch_size", config.train_batch_size),
        num_workers=config["dataloader_num_workers"], drop_last=True,
        collate_fn=collate_fn, sampler=sampler)

    def advantages(scores, uids):
        token_rewards = torch.zeros(len(scores), RESPONSE_LEN)
        token_rewards[:, -1] = scores
        adv, _ = compute_grpo_outcome_advantage(token_rewards, torch.ones_like(token_rewards),
                                                uids)
        return adv[:, 0]

    return SimpleNamespace(sampler=sampler, loader=loader, DataProto=DataProto,
                           advantages=advantages, curriculum_base=AbstractCurriculumSampler)


# -- the step loop, as RayPPOTrainer.fit -----------------------------------------------------


def _old_log_prob(trainer, batch):
    """fit's π_old: `self._compute_old_log_prob(batch)` (0.7), else the worker group's."""
    if hasattr(trainer, "_compute_old_log_prob"):
        return trainer._compute_old_log_prob(batch)[0]
    return trainer.actor_rollout_wg.compute_log_prob(batch)


def _update_actor(trainer, batch):
    """fit's actor update: `self._update_actor(batch)` (0.7), else the worker group's."""
    if hasattr(trainer, "_update_actor"):
        return trainer._update_actor(batch)
    batch.meta_info["multi_turn"] = False
    return trainer.actor_rollout_wg.update_actor(batch)


def _fit(kit, steps: int, *, with_log_probs: bool, drop_uid_groups: int = 0, trainer=None,
         before_update=None, update=None):
    """Returns, per step, the dataset indices the loader produced.

    With `trainer`, π_old comes from its actor (fit's old-log-prob call) and the actor is
    updated (fit's update call) before `sampler.update`; `before_update(batch)` runs just
    before the actor update, `update(sampler, batch, step)` replaces verl's
    `sampler.update(batch=batch)`.
    """
    gen = torch.Generator().manual_seed(0)
    seen = []
    for batch_dict in kit.loader:
        batch = kit.DataProto.from_single_dict(batch_dict)
        batch.meta_info["temperature"] = 1.0
        seen.append(list(batch.non_tensor_batch["extra_info"]))
        batch.non_tensor_batch["uid"] = np.array(
            [str(uuid.uuid4()) for _ in range(len(batch.non_tensor_batch["extra_info"]))],
            dtype=object)
        batch = batch.repeat(repeat_times=N_ROLLOUTS, interleave=True)
        n = N_ROLLOUTS * len(seen[-1])
        # rollout + reward: a score on the last response token, as the reward managers do
        scores = (torch.rand(n, generator=gen) < 0.5).float()
        token_scores = torch.zeros(n, RESPONSE_LEN)
        token_scores[:, -1] = scores
        response_mask = torch.ones(n, RESPONSE_LEN, dtype=torch.int64)
        response_mask[::3, -2:] = 0
        token_scores[::3, -1], token_scores[::3, -3] = 0.0, scores[::3]
        old = -torch.rand(n, RESPONSE_LEN, generator=gen)
        responses = torch.randint(0, VOCAB, (n, RESPONSE_LEN), generator=gen)
        out = {"responses": responses, "response_mask": response_mask,
               "token_level_scores": token_scores, "token_level_rewards": token_scores}
        if trainer is None:
            out["old_log_probs"] = old
        if with_log_probs:  # a trainer that recomputes log-probs after the actor update
            out["log_probs"] = old + 0.01
        batch = batch.union(kit.DataProto.from_single_dict(out))
        if trainer is not None:  # fit: π_old from the actor, its entropys popped
            old_log_prob = _old_log_prob(trainer, batch)
            old_log_prob.batch.pop("entropys")
            batch = batch.union(old_log_prob)
        adv = kit.advantages(scores, batch.non_tensor_batch["uid"])
        batch.batch["advantages"] = adv[:, None].expand(n, RESPONSE_LEN).contiguous()
        perm = torch.randperm(n, generator=gen)  # balance_batch reorders rows
        if drop_uid_groups:  # a group filter (DAPO) dropping whole prompts
            keep_uids = set(batch.non_tensor_batch["uid"][::N_ROLLOUTS][drop_uid_groups:])
            perm = torch.tensor([i for i in perm.tolist()
                                 if batch.non_tensor_batch["uid"][i] in keep_uids])
        batch.reorder(perm)
        if before_update is not None:
            before_update(batch)
        if trainer is not None:
            _update_actor(trainer, batch)
        if kit.curriculum_base is None or isinstance(kit.loader.sampler, kit.curriculum_base):
            if update is None:
                kit.loader.sampler.update(batch=batch)
            else:
                update(kit.loader.sampler, batch, len(seen))
        if len(seen) == steps:
            break
    return seen


def _data_config(url: str, run) -> dict:
    return {
        "train_batch_size": 6,
        "dataloader_num_workers": 0,  # verl asserts 0 with a curriculum sampler
        "prompt_key": "prompt",
        "sampler": {
            "class_path": "pkg://curator_client.integrations.verl",
            "class_name": "CuratorCurriculumSampler",
            "curator": {"url": url, "run_id": run.run_id, "strict": True},
        },
    }


@pytest.fixture(params=["standin", "real"])
def kit_factory(request):
    return _standin_kit if request.param == "standin" else _real_kit


def _bank_and_run(admin, name: str, rows, problem_ids: list | None = None):
    """A bank of `rows` and an actor_curator run on it; `problem_ids` gets row i's id."""
    bank = admin.create_bank(name)
    result, index_map = add_dataset(admin, bank.bank_id, rows, id_field="extra_info.index",
                                    answer_field="reward_model.ground_truth",
                                    metadata_fields=["data_source"])
    assert result.added == len(rows)
    if problem_ids is not None:
        problem_ids.extend(result.problem_ids)
    run = admin.create_run(bank.bank_id, strategy="actor_curator",
                           params={"dormant_steps": 1, "minibatch": 3}, seed=0)
    return run, index_map


def test_verl_sampler_yields_the_tickets_and_reports_each_step(
        admin, curator_url, kit_factory, tmp_path, monkeypatch) -> None:
    rows = _verl_rows(30)
    run, index_map = _bank_and_run(admin, f"verl-{kit_factory.__name__}", rows)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    kit = kit_factory(tmp_path, rows, _Cfg(_data_config(curator_url, run)))
    sampler = kit.sampler
    assert type(sampler).__name__ == "CuratorCurriculumSampler"
    assert len(sampler) == 30 // 6 * 6 and len(kit.loader) == 5
    seen = _fit(kit, steps=4, with_log_probs=True)
    assert len(seen) == 4 and sampler.ledger.selected == 4
    assert sampler.ledger.pending == 0 and sampler.ledger.unmatched == 0
    for extra_infos in seen:
        assert len({e["index"] for e in extra_infos}) == 6
    info = wait_applied(run, 4)
    assert info.model_version == 4 and info.tickets.reported == 4
    assert "utility_fallback" not in info.stats  # log-ratios went with the rewards
    assert sampler.receipts and sampler.receipts[0].accepted == 6


def test_verl_sampler_without_log_probs_and_with_dropped_groups(
        admin, curator_url, kit_factory, tmp_path, monkeypatch) -> None:
    rows = _verl_rows(24)
    run, _ = _bank_and_run(admin, f"verl-drop-{kit_factory.__name__}", rows)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    kit = kit_factory(tmp_path, rows, _Cfg(_data_config(curator_url, run)))
    _fit(kit, steps=2, with_log_probs=False, drop_uid_groups=2)
    assert [r.accepted for r in kit.sampler.receipts] == [4]  # 6 selected, 2 groups dropped
    info = wait_applied(run, 2)
    assert info.tickets.reported == 2
    assert "log_ratios" in info.stats["utility_fallback"]


def test_verl_resume_continues_the_epoch_without_reselecting(
        admin, curator_url, kit_factory, tmp_path, monkeypatch) -> None:
    rows = _verl_rows(30)
    run, _ = _bank_and_run(admin, f"verl-resume-{kit_factory.__name__}", rows)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    config = _Cfg(_data_config(curator_url, run))
    kit = kit_factory(tmp_path, rows, config)
    _fit(kit, steps=2, with_log_probs=False)
    # what verl's checkpoint keeps: the StatefulDataLoader's state (the sampler's inside)
    saved = (kit.loader.state_dict() if hasattr(kit.loader, "state_dict")
             else kit.sampler.state_dict())
    resumed = kit_factory(tmp_path, rows, config)
    if hasattr(resumed.loader, "load_state_dict"):
        resumed.loader.load_state_dict(saved)
    else:
        resumed.sampler.load_state_dict(saved)
    assert len(_fit(resumed, steps=10, with_log_probs=False)) == 3  # 5 per epoch, 2 done
    assert resumed.sampler.ledger.selected == 3  # no ticket burnt replaying steps 1-2
    assert len(_fit(resumed, steps=10, with_log_probs=False)) == 5  # the next epoch: whole
    info = wait_applied(run, 10)
    assert info.tickets.issued == info.tickets.reported == 10


def test_results_from_batch_groups_by_uid_whatever_the_row_order() -> None:
    from curator_client.integrations.verl import results_from_batch

    uids = np.array(["b", "a", "b", "a"], dtype=object)
    extra = np.array([{"index": 2}, {"index": 1}, {"index": 2}, {"index": 1}], dtype=object)
    scores = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]])
    new = torch.zeros(4, 2)
    old = torch.tensor([[-0.2, 0.0], [-1.0, -5.0], [0.0, 0.0], [0.0, -0.4]])
    batch = _StandinDataProto({"token_level_scores": scores, "response_mask": mask,
                               "log_probs": new, "old_log_probs": old},
                              {"uid": uids, "extra_info": extra})
    groups = results_from_batch(batch)
    assert [(g.id_value, g.rewards) for g in groups] == [(2, [1.0, 0.0]), (1, [0.0, 2.0])]
    assert groups[0].log_ratios == pytest.approx([0.1, 0.0])
    assert groups[1].log_ratios == pytest.approx([1.0, 0.2])
    del batch.batch["log_probs"]
    assert results_from_batch(batch)[0].log_ratios is None
    batch.non_tensor_batch["extra_info"][0] = {"index": 9}
    with pytest.raises(ValueError, match="different problems"):
        results_from_batch(batch)


class _StandinTracking:
    """verl.utils.tracking.Tracking as fit uses it: `log(data=metrics, step=...)`."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []

    def log(self, data, step, backend=None):
        self.logged.append((step, dict(data)))


def test_verl_tracking_gets_curator_metrics_each_step(admin, curator_url, tmp_path,
                                                      monkeypatch) -> None:
    from curator_client.integrations.verl import CuratorCurriculumSampler

    rows = _verl_rows(30)
    run, _ = _bank_and_run(admin, "verl-tracking", rows)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    cfg = _data_config(curator_url, run)
    cfg["sampler"]["curator"]["metrics_window"] = 10
    kit = _standin_kit(tmp_path, rows, _Cfg(cfg))
    tracking = type("Tracking", (_StandinTracking,), {})  # a class of its own to patch
    sampler = CuratorCurriculumSampler(_StandinRLHFDataset(rows),
                                       _Cfg(cfg), tracking_class=tracking)
    kit.sampler, kit.loader = sampler, torch.utils.data.DataLoader(
        kit.loader.dataset, batch_size=6, num_workers=0, drop_last=True,
        collate_fn=_standin_collate, sampler=sampler)
    tracker = tracking()
    for step in range(1, 3):  # fit: update the sampler, then log the step's metrics
        _fit(kit, steps=1, with_log_probs=True)
        tracker.log(data={"actor/pg_loss": 0.1, "training/global_step": step}, step=step)
    assert [s for s, _ in tracker.logged] == [1, 2]
    for _, data in tracker.logged:
        assert data["actor/pg_loss"] == 0.1  # verl's own metrics untouched
        for key in ("curator/run_id", "curator/curator_share", "curator/select_seconds",
                    "curator/batch_zero_signal_share", "curator/model_version"):
            assert key in data, (key, sorted(data))
    assert tracker.logged[-1][1]["curator/selects"] >= 2
    off = type("Tracking", (_StandinTracking,), {})
    cfg["sampler"]["curator"]["log_metrics"] = False
    CuratorCurriculumSampler(_StandinRLHFDataset(rows), _Cfg(cfg), tracking_class=off)
    quiet = off()
    quiet.log(data={"x": 1.0}, step=1)
    assert quiet.logged == [(1, {"x": 1.0})]  # log_metrics false: not wrapped


def test_verl_sampler_config_errors() -> None:
    from curator_client.integrations.verl import CuratorCurriculumSampler

    with pytest.raises(ValueError, match="url"):
        CuratorCurriculumSampler([], _Cfg({"train_batch_size": 2, "sampler": {}}))


# -- π_new: the updated actor's log-probs -----------------------------------------------------


class _TinyPolicy:
    """A deterministic actor: log π_θ(token | position) = log_softmax(θ·w + b[position])."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.w = torch.randn(VOCAB, generator=g)
        self.b = torch.randn(RESPONSE_LEN, VOCAB, generator=g)
        self.theta = 0.0

    def log_probs(self, responses: torch.Tensor, theta: float) -> torch.Tensor:
        table = torch.log_softmax(theta * self.w + self.b, dim=-1)  # (position, token)
        positions = torch.arange(RESPONSE_LEN).expand_as(responses)
        return table[positions, responses]


class _FakeActorWorkerGroup:
    """`actor_rollout_wg` as the driver sees it (legacy workers): `compute_log_prob` answers
    "old_log_probs" + "entropys" of the current weights, `update_actor` takes a step."""

    def __init__(self, make_proto) -> None:
        self.policy = _TinyPolicy()
        self.make_proto = make_proto
        self.calls: list[tuple[str, float]] = []

    def compute_log_prob(self, data):
        self.calls.append(("compute_log_prob", self.policy.theta))
        log_probs = self.policy.log_probs(data.batch["responses"], self.policy.theta)
        return self.make_proto({"old_log_probs": log_probs,
                                "entropys": torch.ones_like(log_probs)},
                               {"temperature": data.meta_info.get("temperature", 1.0)})

    def update_actor(self, data):
        self.calls.append(("update_actor", self.policy.theta))
        mask = data.batch["response_mask"].float()
        signal = float((data.batch["advantages"] * mask).sum() / mask.sum())
        self.policy.theta += 0.5 + 0.1 * signal  # the step depends on the batch
        return self.make_proto({}, {"metrics": {"actor/pg_loss": [0.0]}})


def _standin_trainer_class(style: str) -> type:
    """A fresh RayPPOTrainer stand-in (fresh: the hook patches the class)."""

    class Trainer:  # verl 0.5 / 0.6: fit calls actor_rollout_wg.update_actor itself
        def init_workers(self) -> None:
            self.actor_rollout_wg = self.make_worker_group()

    if style == "v07":
        class Trainer07(Trainer):  # verl 0.7.x's legacy-worker paths, transcribed
            def _compute_old_log_prob(self, batch):
                return self.actor_rollout_wg.compute_log_prob(batch), 0

            def _update_actor(self, batch):
                batch.meta_info["multi_turn"] = False
                batch.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature
                return self.actor_rollout_wg.update_actor(batch)

        return Trainer07
    return Trainer


def _proto_factory(kit_name: str):
    if kit_name == "standin":
        return lambda tensors, meta: _StandinDataProto(dict(tensors), {}, dict(meta))
    from verl import DataProto

    def make(tensors, meta):
        if tensors:
            return DataProto.from_dict(tensors=tensors, meta_info=meta)
        return DataProto.from_single_dict(data={}, meta_info=meta)

    return make


def _trainer_base(kit_name: str, style: str, monkeypatch) -> type:
    """The class `post_update_log_probs` patches: verl's RayPPOTrainer (its init_workers,
    which would start GPU workers, replaced for the test and restored after it), or a
    stand-in installed as `verl.trainer.ppo.ray_trainer.RayPPOTrainer`."""
    if kit_name == "real":
        pytest.importorskip("verl.trainer.ppo.ray_trainer",
                            reason="needs verl 0.5-0.7.x with its trainer importable")
        from verl.trainer.ppo.ray_trainer import RayPPOTrainer

        def init_workers(self) -> None:
            self.actor_rollout_wg = self.make_worker_group()

        monkeypatch.setattr(RayPPOTrainer, "init_workers", init_workers)
        return RayPPOTrainer
    base = _standin_trainer_class(style)
    module = types.ModuleType("verl.trainer.ppo.ray_trainer")
    module.RayPPOTrainer = base
    monkeypatch.setitem(sys.modules, "verl.trainer.ppo.ray_trainer", module)
    return base


def _new_trainer(cls: type, make_worker_group):
    trainer = cls.__new__(cls)  # RayPPOTrainer.__init__ wants pools, tokenizer, a full config
    trainer.config = _Cfg({"actor_rollout_ref": {"rollout": {
        "temperature": 1.0, "multi_turn": {"enable": False}}}})
    trainer.use_legacy_worker_impl = "auto"
    trainer.make_worker_group = make_worker_group
    return trainer


def _stored_feedback(tmp_path_factory, run_id: int) -> list[dict]:
    """What the service stored for the run's tickets, oldest ticket first: one dict per
    ticket, problem_id -> (rewards, log_ratios, utility, utility_kind)."""
    base = tmp_path_factory.getbasetemp()  # conftest's curator_url: mktemp("curator-integrations")
    dbs = sorted({db.resolve() for db in base.glob("curator-integrations*/curator.db")})
    assert len(dbs) == 1, f"expected the integration service's database, found {dbs}"
    with contextlib.closing(sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)) as con:
        rows = con.execute(
            "SELECT t.step, f.problem_id, f.rewards, f.log_ratios, f.utility, f.utility_kind "
            "FROM feedback f JOIN tickets t ON t.id = f.ticket_id WHERE t.run_id = ?",
            (run_id,)).fetchall()
    tickets: dict[int, dict] = defaultdict(dict)
    for step, problem_id, rewards, log_ratios, utility, kind in rows:
        tickets[step][problem_id] = (json.loads(rewards),
                                     None if log_ratios is None else json.loads(log_ratios),
                                     utility, kind)
    return [tickets[step] for step in sorted(tickets)]


ROUTES = [  # (kit, trainer, how the hook is added)
    ("standin", "v07", "flag"), ("standin", "v06", "flag"),
    ("standin", "v07", "subclass"), ("standin", "v06", "attach"),
    ("real", "verl", "flag"), ("real", "verl", "subclass"),
]


@pytest.mark.parametrize(("kit_name", "style", "route"), ROUTES,
                         ids=["-".join(r) for r in ROUTES])
def test_post_update_log_probs_send_the_updated_actors_log_ratios(
        admin, curator_url, tmp_path, tmp_path_factory, monkeypatch,
        kit_name, style, route) -> None:
    from curator_client.integrations import verl as curator_verl

    base = _trainer_base(kit_name, style, monkeypatch)
    groups = []
    make_proto = _proto_factory(kit_name)

    def make_worker_group():
        groups.append(_FakeActorWorkerGroup(make_proto))
        return groups[-1]

    rows, problem_ids = _verl_rows(30), []
    run, _ = _bank_and_run(admin, f"verl-pi-new-{kit_name}-{style}-{route}", rows, problem_ids)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    config = _data_config(curator_url, run)
    if route == "flag":
        config["sampler"]["curator"]["post_update_log_probs"] = True
    kit = (_standin_kit if kit_name == "standin" else _real_kit)(tmp_path, rows, _Cfg(config))
    if route == "subclass":
        trainer = _new_trainer(curator_verl.CuratorRayPPOTrainer, make_worker_group)
        assert issubclass(type(trainer), base)
    else:
        trainer = _new_trainer(base, make_worker_group)
    trainer.init_workers()  # TaskRunner.run: trainer built after the sampler, then this
    if route == "attach":
        curator_verl.attach_post_update_log_probs(trainer)
        curator_verl.attach_post_update_log_probs(trainer)  # idempotent
    (wg,) = groups

    expected = []  # per step: {extra_info.index: (rewards, log_ratios)}, rows in batch order
    pending: list = []  # the check to run once the actor update is done

    def before_update(batch) -> None:
        assert "log_probs" not in set(batch.batch.keys())
        theta_old = wg.policy.theta
        responses = batch.batch["responses"]
        assert torch.equal(batch.batch["old_log_probs"],
                           wg.policy.log_probs(responses, theta_old))

        def check_after_update() -> None:
            theta_new = wg.policy.theta
            assert theta_new != theta_old
            new = wg.policy.log_probs(responses, theta_new)
            assert torch.equal(batch.batch["log_probs"], new)  # stored in the same object
            mask = batch.batch["response_mask"].float()
            ratios = ((new - batch.batch["old_log_probs"]) * mask).sum(-1) / mask.sum(-1)
            scores = batch.batch["token_level_scores"].sum(-1)
            step: dict = {}
            for uid, extra, r, lr in zip(batch.non_tensor_batch["uid"],
                                         batch.non_tensor_batch["extra_info"],
                                         scores.tolist(), ratios.tolist()):
                entry = step.setdefault(extra["index"], (uid, [], []))
                assert entry[0] == uid
                entry[1].append(r)
                entry[2].append(lr)
            expected.append({k: (v[1], v[2]) for k, v in step.items()})

        pending.append(check_after_update)

    def update(sampler, batch, step) -> None:
        pending.pop()()  # the hook ran inside the actor update, before this call
        sampler.update(batch=batch)

    steps = 3
    _fit(kit, steps, with_log_probs=False, trainer=trainer, before_update=before_update,
         update=update)
    # per step: π_old, the update, then π_new on the updated weights
    assert [name for name, _ in wg.calls] == ["compute_log_prob", "update_actor",
                                              "compute_log_prob"] * steps
    assert len(expected) == steps and not kit.sampler._warned_no_log_probs

    info = wait_applied(run, steps)
    assert "utility_fallback" not in info.stats
    assert info.stats["utility_kinds"] == {"ratio": steps * 6}
    problem_of = {row["extra_info"]["index"]: pid for row, pid in zip(rows, problem_ids)}
    stored = _stored_feedback(tmp_path_factory, run.run_id)
    assert len(stored) == steps
    for want, got in zip(expected, stored):
        assert set(got) == {problem_of[index] for index in want}
        moved = 0.0
        for index, (rewards, ratios) in want.items():
            got_rewards, got_ratios, utility, kind = got[problem_of[index]]
            assert kind == "ratio" and got_rewards == rewards
            assert got_ratios == pytest.approx(ratios, abs=1e-6)
            r = np.array(rewards)
            adv = (r - r.mean()) / (r.std() + 1e-6)
            assert utility == pytest.approx(float(np.mean(adv * np.exp(ratios))), abs=1e-6)
            moved = max(moved, max(abs(x) for x in ratios))
        assert moved > 1e-3  # the policy moved: zeros (π_old twice) would not pass


UPDATE_FORMS = [  # verl 0.5-0.7.1 call update(batch=batch); forks may pass the step
    lambda sampler, batch, step: sampler.update(batch=batch),
    lambda sampler, batch, step: sampler.update(batch),
    lambda sampler, batch, step: sampler.update(batch, step),
    lambda sampler, batch, step: sampler.update(batch=batch, step_num=step),
]


def test_verl_sampler_update_takes_the_step_number_too(
        admin, curator_url, kit_factory, tmp_path, monkeypatch) -> None:
    rows = _verl_rows(30)
    run, _ = _bank_and_run(admin, f"verl-update-forms-{kit_factory.__name__}", rows)
    monkeypatch.setenv("CURATOR_RUN_TOKEN", run.token)
    kit = kit_factory(tmp_path, rows, _Cfg(_data_config(curator_url, run)))
    accepted = []

    def update(sampler, batch, step) -> None:
        UPDATE_FORMS[step - 1](sampler, batch, step)
        accepted.append([r.accepted for r in sampler.receipts])

    _fit(kit, steps=len(UPDATE_FORMS), with_log_probs=True, update=update)
    assert accepted == [[6]] * len(UPDATE_FORMS)
    info = wait_applied(run, len(UPDATE_FORMS))
    assert info.tickets.reported == len(UPDATE_FORMS) and "utility_fallback" not in info.stats
    with pytest.raises(TypeError, match="batch"):
        kit.sampler.update()
    with pytest.raises(TypeError, match="batch"):
        kit.sampler.update(step_num=5)


def test_post_update_log_probs_say_what_they_need(monkeypatch) -> None:
    from curator_client import Client
    from curator_client.integrations import verl as curator_verl
    from curator_client.integrations.verl import CuratorCurriculumSampler

    with pytest.raises(RuntimeError, match="init_workers"):  # 0.5/0.6 before the workers
        curator_verl.attach_post_update_log_probs(SimpleNamespace())
    monkeypatch.setitem(sys.modules, "verl.trainer.ppo.ray_trainer", None)  # no verl
    with pytest.raises(ImportError, match=r"verl 0\.5-0\.7"):
        curator_verl.CuratorRayPPOTrainer  # noqa: B018
    config = {"train_batch_size": 2,
              "sampler": {"curator": {"url": "http://127.0.0.1:9", "run_id": 1}}}
    with Client("http://127.0.0.1:9") as client:
        monkeypatch.setenv("CURATOR_POST_UPDATE_LOG_PROBS", "false")
        assert not CuratorCurriculumSampler([], _Cfg(config), client=client).post_update_log_probs
        monkeypatch.setenv("CURATOR_POST_UPDATE_LOG_PROBS", "1")
        with pytest.raises(ImportError, match=r"verl 0\.5-0\.7"):
            CuratorCurriculumSampler([], _Cfg(config), client=client)
        monkeypatch.delenv("CURATOR_POST_UPDATE_LOG_PROBS")
        config["sampler"]["curator"]["post_update_log_probs"] = True
        with pytest.raises(ImportError, match=r"verl 0\.5-0\.7"):
            CuratorCurriculumSampler([], _Cfg(config), client=client)

"""verl's curriculum sampler, driven the way verl 0.5-0.7's RayPPOTrainer drives it, against
a real running service.

Two kits run the same step loop (`_fit`, a transcription of `RayPPOTrainer.fit`'s data
path: loader → uid per prompt → repeat(rollout.n, interleave) → rewards, response mask,
old log-probs → GRPO advantages → balance_batch's reorder → `sampler.update(batch)`):

- `standin`: verl is not installable beside this project (it pins numpy<2), so a faithful
  local stand-in of the pieces the sampler touches: `RLHFDataset.__getitem__` rows (with
  `.dataframe`), `collate_fn`, and a `DataProto` (tensor `batch`, numpy `non_tensor_batch`,
  `repeat`, `reorder`).
- `real`: verl's own `create_rl_sampler` (it loads the class from `data.sampler.class_path`
  and checks `AbstractSampler`), `RLHFDataset` over a parquet file, `collate_fn`,
  `StatefulDataLoader`, `DataProto` and `compute_grpo_outcome_advantage`. Runs only where a
  verl with the interface (0.5-0.7.x) is importable; skipped here otherwise.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from curator_client.integrations.datasets import add_dataset  # noqa: E402
from tests.integrations.helpers import wait_applied  # noqa: E402

N_ROLLOUTS = 4
RESPONSE_LEN = 6


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
    def from_single_dict(cls, data: dict):
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
        return cls(tensors, others)

    def __len__(self) -> int:
        return len(next(iter(self.non_tensor_batch.values())))

    def repeat(self, repeat_times: int, interleave: bool = True):
        assert interleave
        return _StandinDataProto(
            {k: v.repeat_interleave(repeat_times, dim=0) for k, v in self.batch.items()},
            {k: np.repeat(v, repeat_times, axis=0) for k, v in self.non_tensor_batch.items()})

    def union(self, other):
        return _StandinDataProto({**self.batch, **other.batch},
                                 {**self.non_tensor_batch, **other.non_tensor_batch})

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
    dataset = RLHFDataset(data_files=[str(path)], tokenizer=None, processor=None,
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


def _fit(kit, steps: int, *, with_log_probs: bool, drop_uid_groups: int = 0):
    """Returns, per step, the dataset indices the loader produced."""
    gen = torch.Generator().manual_seed(0)
    seen = []
    for batch_dict in kit.loader:
        batch = kit.DataProto.from_single_dict(batch_dict)
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
        out = {"responses": torch.ones(n, RESPONSE_LEN, dtype=torch.int64),
               "response_mask": response_mask, "old_log_probs": old,
               "token_level_scores": token_scores, "token_level_rewards": token_scores}
        if with_log_probs:  # a trainer that recomputes log-probs after the actor update
            out["log_probs"] = old + 0.01
        batch = batch.union(kit.DataProto.from_single_dict(out))
        adv = kit.advantages(scores, batch.non_tensor_batch["uid"])
        batch.batch["advantages"] = adv[:, None].expand(n, RESPONSE_LEN).contiguous()
        perm = torch.randperm(n, generator=gen)  # balance_batch reorders rows
        if drop_uid_groups:  # a group filter (DAPO) dropping whole prompts
            keep_uids = set(batch.non_tensor_batch["uid"][::N_ROLLOUTS][drop_uid_groups:])
            perm = torch.tensor([i for i in perm.tolist()
                                 if batch.non_tensor_batch["uid"][i] in keep_uids])
        batch.reorder(perm)
        if kit.curriculum_base is None or isinstance(kit.loader.sampler, kit.curriculum_base):
            kit.loader.sampler.update(batch=batch)
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


def _bank_and_run(admin, name: str, rows):
    bank = admin.create_bank(name)
    result, index_map = add_dataset(admin, bank.bank_id, rows, id_field="extra_info.index",
                                    answer_field="reward_model.ground_truth",
                                    metadata_fields=["data_source"])
    assert result.added == len(rows)
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


def test_verl_sampler_config_errors() -> None:
    from curator_client.integrations.verl import CuratorCurriculumSampler

    with pytest.raises(ValueError, match="url"):
        CuratorCurriculumSampler([], _Cfg({"train_batch_size": 2, "sampler": {}}))

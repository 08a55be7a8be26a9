"""The PyTorch samplers in DataLoaders, against a real running service."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from curator_client.integrations.datasets import add_dataset  # noqa: E402
from curator_client.integrations.torch import (  # noqa: E402
    CuratorBatchSampler,
    CuratorSampler,
    IndexedDataset,
    sequence_log_ratios,
)
from tests.integrations.helpers import arith_rows, wait_applied  # noqa: E402


def _collate(rows):
    return {"index": torch.tensor([r["index"] for r in rows]),
            "prompt": [r["prompt"] for r in rows], "answer": [r["answer"] for r in rows]}


def _rollouts(answers, group: int):
    """Deterministic stand-in for generation + reward: [B, G] rewards and log-ratios."""
    rewards = torch.tensor([[float((int(a) + g) % 3 == 0) for g in range(group)]
                            for a in answers])
    return rewards, torch.full_like(rewards, 0.01)


def test_sequence_log_ratios_mean_over_the_response_mask() -> None:
    new = torch.tensor([[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]])
    old = torch.tensor([[-1.5, -2.0, -9.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert sequence_log_ratios(new, old, mask).tolist() == [0.25, 0.0]
    assert sequence_log_ratios(new, old).tolist() == pytest.approx([6.5 / 3, 0.0])


def test_batch_sampler_drives_a_dataloader_and_reports_each_step(admin) -> None:
    rows = arith_rows(64)
    bank = admin.create_bank("torch-batch")
    add_dataset(admin, bank.bank_id, rows)
    run = admin.create_run(bank.bank_id, strategy="actor_curator",
                           params={"dormant_steps": 1, "minibatch": 4}, seed=0)
    sampler = CuratorBatchSampler(run, rows, batch_size=8, steps=4, strict=True)
    assert len(sampler) == 4
    loader = DataLoader(IndexedDataset(rows), batch_sampler=sampler, collate_fn=_collate)
    steps = 0
    for batch in loader:
        ticket = sampler.ledger.last_batch
        # the rows the loader built are exactly the ticket's problems, in its order
        assert [f"row-{i}" for i in batch["index"].tolist()] == [
            p.external_id for p in ticket.problems]
        assert batch["prompt"] == [p.prompt for p in ticket.problems]
        rewards, log_ratios = _rollouts(batch["answer"], group=4)
        (receipt,) = sampler.feedback(batch["index"], rewards, log_ratios)
        assert receipt.ticket_id == ticket.ticket_id and receipt.accepted == 8
        steps += 1
    assert steps == 4 and sampler.ledger.pending == 0
    info = wait_applied(run, 4)
    assert info.model_version == 4 and info.tickets.issued == 4
    assert "utility_fallback" not in info.stats  # log-ratios were sent


def test_repeat_sampler_with_prefetching_workers_attributes_every_group(admin) -> None:
    rows = arith_rows(48)
    bank = admin.create_bank("torch-repeat")
    add_dataset(admin, bank.bank_id, rows, id_field="uid")  # ids from a column
    run = admin.create_run(bank.bank_id, strategy="uniform", seed=1)
    group = 3
    sampler = CuratorSampler(run, rows, batch_size=4, repeat=group, steps=5, id_field="uid",
                             strict=True)
    assert len(sampler) == 5 * 4 * group
    # two worker processes prefetching two batches each: tickets are selected ahead
    loader = DataLoader(IndexedDataset(rows), sampler=sampler, batch_size=4 * group,
                        drop_last=True, collate_fn=_collate, num_workers=2, prefetch_factor=2)
    reported = []
    for batch in loader:
        index = batch["index"]
        assert index.view(4, group).eq(index.view(4, group)[:, :1]).all()  # groups intact
        rewards = torch.tensor([float(i % 2) for i in range(len(index))])  # one per rollout
        reported += sampler.feedback(index, rewards)
    assert len(reported) == 5 and sampler.ledger.unmatched == 0
    assert all(r.accepted == 4 for r in reported)
    info = wait_applied(run, 5)
    assert info.tickets.reported == 5
    assert "log_ratios" in info.stats.get("utility_fallback", "")


def test_sampler_needs_a_dataset_or_an_index_map(admin) -> None:
    run = admin.run(1)
    with pytest.raises(ValueError, match="dataset"):
        CuratorBatchSampler(run, batch_size=2)
    with pytest.raises(ValueError, match="repeat"):
        CuratorSampler(run, [{}], batch_size=1, repeat=0)


def test_feedback_for_an_index_never_issued_warns(admin) -> None:
    rows = arith_rows(24)
    bank = admin.create_bank("torch-unmatched")
    add_dataset(admin, bank.bank_id, rows, id_field="uid")
    run = admin.create_run(bank.bank_id, strategy="uniform", seed=1)
    sampler = CuratorSampler(run, rows, batch_size=4, steps=1, id_field="uid", strict=True)
    batch = list(iter(sampler))
    with pytest.warns(RuntimeWarning, match="match no outstanding ticket"):
        receipts = sampler.feedback([999999, *batch], [[1.0, 0.0]] * (len(batch) + 1))
    assert len(receipts) == 1 and receipts[0].accepted == len(batch)
    assert sampler.ledger.unmatched == 1

"""TRL: the Curator-backed RepeatSampler, and real GRPOTrainer training against a real
running service (a tiny random GPT-2 on the CPU)."""

from __future__ import annotations

import pytest

pytest.importorskip("trl", reason="the TRL integration needs `pip install trl` (extra [trl])")
datasets = pytest.importorskip("datasets")

from curator_client.integrations import TicketLedger  # noqa: E402
from curator_client.integrations.datasets import add_dataset  # noqa: E402
from curator_client.integrations.trl import (  # noqa: E402
    INDEX_COLUMN,
    CuratorGRPOTrainer,
    CuratorRepeatSampler,
)
from tests.integrations.helpers import arith_rows, tiny_causal_lm, wait_applied  # noqa: E402


def test_repeat_sampler_keeps_trl_repeat_sampler_order(admin) -> None:
    from trl.trainer.utils import RepeatSampler

    rows = arith_rows(30)
    bank = admin.create_bank("trl-order")
    _, index_map = add_dataset(admin, bank.bank_id, rows)
    run = admin.create_run(bank.bank_id, seed=0)
    ledger = TicketLedger(run, index_map, strict=True)
    sampler = CuratorRepeatSampler(ledger, mini_repeat_count=2, batch_size=3, repeat_count=2)
    reference = RepeatSampler(rows, mini_repeat_count=2, batch_size=3, repeat_count=2)
    assert len(sampler) == len(reference) == 30 // 3 * 3 * 2 * 2
    order = list(sampler)
    assert len(order) == len(sampler) and ledger.selected == 10
    chunk_len = 3 * 2 * 2
    for k, pending in enumerate(ledger._pending[:10]):
        chunk = pending.indices
        # RepeatSampler's layout for this chunk: the chunk repeat_count times, each index
        # mini_repeat_count times in a row
        expected = [i for _ in range(2) for i in chunk for _ in range(2)]
        assert order[k * chunk_len:(k + 1) * chunk_len] == expected


def _reward(completions, answer, **kwargs):
    # 1 for the right sum, plus a little for each digit: groups rarely have zero variance
    return [float(c.strip().startswith(a)) + 0.1 * sum(ch.isdigit() for ch in c)
            for c, a in zip(completions, answer)]


@pytest.mark.slow
def test_grpo_trainer_trains_on_curator_prompts_and_reports_feedback(admin, tmp_path) -> None:
    from trl import GRPOConfig

    rows = [{k: r[k] for k in ("prompt", "answer", "level")} for r in arith_rows(40)]
    dataset = datasets.Dataset.from_list(rows)
    bank = admin.create_bank("trl-e2e")
    add_dataset(admin, bank.bank_id, dataset, metadata_fields=["level"])
    run = admin.create_run(bank.bank_id, strategy="actor_curator",
                           params={"dormant_steps": 1, "minibatch": 4}, seed=0)

    issued = []  # spy on the real Run: every ticket the trainer's sampler selected
    select = run.select
    run.select = lambda *a, **k: issued.append(select(*a, **k)) or issued[-1]
    generated: list[list[int]] = []

    def reward(prompts, completions, answer, **kwargs):
        generated.append(list(kwargs[INDEX_COLUMN]))
        return _reward(completions, answer)

    model, tokenizer = tiny_causal_lm()
    steps, group = 3, 4
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], save_strategy="no",
        max_steps=steps, per_device_train_batch_size=8, gradient_accumulation_steps=2,
        num_generations=group, max_completion_length=6, learning_rate=1e-3,
        logging_steps=1, dataloader_num_workers=0, gradient_checkpointing=False, seed=0)
    trainer = CuratorGRPOTrainer(model=model, reward_funcs=reward, args=args,
                                 train_dataset=dataset, processing_class=tokenizer,
                                 curator_run=run, curator_strict=True)
    prompts_per_ticket = args.generation_batch_size // group
    assert prompts_per_ticket == 4  # 8 rows x 2 accumulation steps / 4 rollouts
    trainer.train()

    ledger = trainer.curator
    assert trainer.state.global_step == steps
    # one generation round (one ticket) per optimizer step, each of the ticket's problems
    assert len(generated) == steps
    receipts = trainer.curator_callback.receipts
    assert [r.accepted for r in receipts] == [prompts_per_ticket] * steps
    tickets = {r.ticket_id for r in receipts}
    for rows_indices, ticket in zip(generated, issued[:steps]):
        assert ticket.ticket_id in tickets
        expected = [ledger.index_map.index(p.external_id) for p in ticket.problems]
        assert rows_indices == [i for i in expected for _ in range(group)]
    info = wait_applied(run, steps)
    assert info.tickets.applied == steps and info.model_version == steps
    assert info.tickets.issued - info.tickets.reported <= 1  # at most the loader's prefetch
    assert "log_ratios" in info.stats["utility_fallback"]  # rewards only, as documented

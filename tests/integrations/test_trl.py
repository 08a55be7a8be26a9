"""TRL: the Curator-backed RepeatSampler, and real GRPOTrainer training against a real
running service (a tiny random GPT-2 on the CPU), with rewards only and with log-ratios
checked against a direct computation of log π_new − log π_old."""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("trl", reason="the TRL integration needs `pip install trl` (extra [trl])")
datasets = pytest.importorskip("datasets")

from curator_client.integrations import TicketLedger  # noqa: E402
from curator_client.integrations.datasets import add_dataset  # noqa: E402
from curator_client.integrations.trl import (  # noqa: E402
    INDEX_COLUMN,
    ROW_KEY,
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


def _spy_feedback(run) -> list[tuple[str, list[dict]]]:
    """Record every feedback payload the trainer sends through the real `Run`."""
    sent: list[tuple[str, list[dict]]] = []
    feedback = run.feedback

    def spy(ticket_id, results, **kwargs):
        sent.append((ticket_id, [dict(r) for r in results]))
        return feedback(ticket_id, sent[-1][1], **kwargs)

    run.feedback = spy
    return sent


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
    sent = _spy_feedback(run)
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
                                 curator_run=run, curator_strict=True,
                                 curator_log_ratios=False)
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
    assert "log_ratios" in info.stats["utility_fallback"]  # rewards only, as asked
    assert info.stats["utility_kinds"] == {"abs_advantage": steps * prompts_per_ticket}
    results = [r for _, payload in sent for r in payload]
    assert len(results) == steps * prompts_per_ticket
    assert all(len(r["rewards"]) == group and "log_ratios" not in r for r in results)
    assert not trainer._curator_generations  # nothing kept for a log-ratio pass


def _direct_logps(state: dict, out: dict, temperature: float, bf16: bool):
    """Per-token log-probs of TRL's completions under a policy with the given weights, by
    a plain transformers forward (a fresh model, no TRL patch): log_softmax(logits / T)
    at the completion tokens; under bf16 autocast when the trainer used it."""
    import contextlib

    import torch

    model, _ = tiny_causal_lm()
    model.load_state_dict(state)
    model.eval()
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    t = out["completion_ids"].size(1)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -t - 1:-1]
    logps = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logps.gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)


def _direct_log_ratios(new_state: dict, old_state: dict, out: dict, temperature: float,
                       bf16: bool = False) -> list[float]:
    """Mean over each rollout's completion tokens of log π_new − log π_old."""
    diff = (_direct_logps(new_state, out, temperature, bf16)
            - _direct_logps(old_state, out, temperature, bf16))
    mask = out["completion_mask"].float()
    return ((diff * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).tolist()


# (per-device batch, gradient accumulation, steps_per_generation, num_iterations, steps,
# bf16): one generation batch per optimizer step with π_old from the loss forward (fp32,
# and under TRL's default bf16 autocast); one spanning two optimizer steps (TRL keeps
# old_per_token_logps); two per optimizer step; num_iterations=2 with both passes over
# the batch inside one optimizer step (π_old from the first loss forward).
LOG_RATIO_CONFIGS = {
    "one-step-per-generation": (8, 2, None, 1, 2, False),
    "one-step-per-generation-bf16": (8, 2, None, 1, 2, True),
    "generation-spans-two-steps": (8, 1, 2, 1, 4, False),
    "two-generations-per-step": (8, 2, 1, 1, 2, False),
    "two-iterations-in-one-step": (8, 2, 1, 2, 2, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(LOG_RATIO_CONFIGS))
def test_grpo_trainer_reports_log_ratios_of_the_trained_policy(admin, tmp_path, config
                                                                ) -> None:
    from transformers import TrainerCallback
    from trl import GRPOConfig

    per_device, accumulation, per_generation, iterations, steps, bf16 = (
        LOG_RATIO_CONFIGS[config])
    group, temperature = 4, 0.7
    rows = [{k: r[k] for k in ("prompt", "answer", "level")} for r in arith_rows(40)]
    dataset = datasets.Dataset.from_list(rows)
    bank = admin.create_bank(f"trl-ratios-{config}")
    add_dataset(admin, bank.bank_id, dataset, metadata_fields=["level"])
    run = admin.create_run(bank.bank_id, strategy="actor_curator",
                           params={"dormant_steps": 1, "minibatch": 4}, seed=0)
    issued = []
    select = run.select
    run.select = lambda *a, **k: issued.append(select(*a, **k)) or issued[-1]
    sent = _spy_feedback(run)

    model, tokenizer = tiny_causal_lm()
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], save_strategy="no",
        max_steps=steps, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, steps_per_generation=per_generation,
        num_iterations=iterations, num_generations=group, max_completion_length=6,
        temperature=temperature, learning_rate=1e-2, disable_dropout=True, bf16=bf16,
        logging_steps=1, dataloader_num_workers=0, gradient_checkpointing=False, seed=0)
    trainer = CuratorGRPOTrainer(model=model, reward_funcs=_reward, args=args,
                                 train_dataset=dataset, processing_class=tokenizer,
                                 curator_run=run, curator_strict=True)
    assert trainer.curator_log_ratios  # on by default

    def snapshot():
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    generations = []  # (weights that sampled, TRL's generation batch), in order
    generate = trainer._generate_and_score_completions

    def spy_generate(inputs):
        before = snapshot()
        out = generate(inputs)
        generations.append((before, {k: out[k] for k in (
            "prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}))
        generations[-1][1]["tagged"] = ROW_KEY in out
        generations[-1][1]["trl_old"] = "old_per_token_logps" in out
        return out

    trainer._generate_and_score_completions = spy_generate
    after_step = {}  # global step -> weights after that optimizer step

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            after_step[state.global_step] = snapshot()

    trainer.add_callback(Snapshots())
    trainer.train()

    every = args.steps_per_generation * iterations
    assert len(generations) == steps * accumulation // every
    # TRL keeps its own π_old exactly when a batch outlives an optimizer step
    for _, out in generations:
        assert out["trl_old"] == (accumulation % every != 0)
        assert out["tagged"] == (not out["trl_old"])
    prompts_per_ticket = args.generation_batch_size // group
    by_ticket = dict(sent)
    assert len(by_ticket) == len(generations)
    assert [r.accepted for r in trainer.curator_callback.receipts] == (
        [prompts_per_ticket] * len(generations))

    tolerance = 2e-3 if bf16 else 1e-4  # bf16 autocast: both sides round alike, not equal
    moved = 0.0
    for k, ((old_state, out), ticket) in enumerate(zip(generations, issued)):
        # π_new: the weights after the optimizer step that consumed the batch's last
        # micro-batch (micro-steps k*every .. (k+1)*every - 1)
        last_step = math.ceil((k + 1) * every / accumulation)
        new_state = after_step[last_step]
        expected = _direct_log_ratios(new_state, old_state, out, temperature, bf16)
        results = by_ticket[ticket.ticket_id]
        assert [r["problem_id"] for r in results] == [p.problem_id for p in ticket.problems]
        got = [lr for r in results for lr in r["log_ratios"]]
        assert all(len(r["rewards"]) == len(r["log_ratios"]) == group for r in results)
        assert got == pytest.approx(expected, abs=tolerance)
        moved = max(moved, max(abs(x) for x in expected))
        if last_step > 1:  # the step before is not π_new: the check tells them apart
            early = _direct_log_ratios(after_step[last_step - 1], old_state, out, temperature,
                                       bf16)
            assert max(abs(a - b) for a, b in zip(early, got)) > 10 * tolerance
    assert moved > 10 * tolerance  # the policy moved: zeros would not pass

    info = wait_applied(run, len(generations))
    assert info.stats["utility_kinds"] == {"ratio": len(generations) * prompts_per_ticket}
    assert "utility_fallback" not in info.stats


@pytest.mark.slow
def test_grpo_trainer_log_ratios_across_two_processes(admin, curator_url, tmp_path) -> None:
    """Two processes (torchrun, gloo on the CPU, DDP), gradient checkpointing on: each
    prompt's group is split over both processes, and its rewards and log-ratios reach the
    service in row order, equal to the direct computation each process makes."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    rows = [{k: r[k] for k in ("prompt", "answer", "level")} for r in arith_rows(40)]
    bank = admin.create_bank("trl-ratios-2proc")
    add_dataset(admin, bank.bank_id, datasets.Dataset.from_list(rows),
                metadata_fields=["level"])
    out = tmp_path / "two_process.json"
    root = Path(__file__).resolve().parents[2]
    # A torchrun child has twice died of SIGABRT in CI ("terminate called without an
    # active exception": torch's C++, not the Python it runs), never locally. That one
    # signal gets one more attempt, on a fresh run so the run's record is the attempt's;
    # any other failure, or a second abort, fails the test as before.
    for attempt in range(2):
        run = admin.create_run(bank.bank_id, strategy="actor_curator",
                               params={"dormant_steps": 1, "minibatch": 4}, seed=0)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CURATOR_TEST_URL": curator_url,
               "CURATOR_TEST_RUN": str(run.run_id), "CURATOR_TEST_TOKEN": run.token or "",
               "CURATOR_TEST_OUT": str(out), "CURATOR_TEST_DIR": str(tmp_path)}
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node", "2", "-m", "tests.integrations.test_trl"],
            cwd=root, env=env, capture_output=True, text=True, timeout=300)
        aborted = proc.returncode != 0 and "Signal 6 (SIGABRT)" in proc.stderr
        if not aborted or attempt == 1:
            break
        print("torchrun child aborted (SIGABRT); one more attempt:\n" + proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(out.read_text())

    group = 4
    assert got["processes"] == 2 and len(got["generations"]) == 2
    sent = dict(got["sent"])
    moved = 0.0
    for ticket, per_process in zip(got["issued"], got["generations"]):
        # global row order = process 0's rows, then process 1's; 2 rows of 4 per process
        indices = [i for p in per_process for i in p["indices"]]
        expected = [x for p in per_process for x in p["direct"]]
        assert all(len(p["indices"]) == 8 for p in per_process)
        assert [i for p in per_process for i in p["indices"][::group]] == ticket["indices"]
        assert indices == [i for i in ticket["indices"] for _ in range(group)]
        results = sent[ticket["ticket_id"]]
        assert [r["problem_id"] for r in results] == ticket["problem_ids"]
        received = [x for r in results for x in r["log_ratios"]]
        assert received == pytest.approx(expected, abs=1e-4)
        moved = max(moved, max(abs(x) for x in expected))
    assert moved > 1e-3
    info = wait_applied(run, 2)
    assert info.stats["utility_kinds"] == {"ratio": 2 * 4}


def _two_process_worker() -> None:
    """One process of the two-process test (run by torchrun, environment from the test)."""
    import json
    import os

    from accelerate.utils import gather_object
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from curator_client import Client
    from tests.conftest import ADMIN

    client = Client(os.environ["CURATOR_TEST_URL"], token=ADMIN)
    run = client.run(int(os.environ["CURATOR_TEST_RUN"]),
                     os.environ["CURATOR_TEST_TOKEN"] or None)
    issued, sent = [], []
    select, feedback = run.select, run.feedback
    run.select = lambda *a, **k: issued.append(select(*a, **k)) or issued[-1]

    def spy(ticket_id, results, **kwargs):
        sent.append((ticket_id, [dict(r) for r in results]))
        return feedback(ticket_id, sent[-1][1], **kwargs)

    run.feedback = spy
    rows = [{k: r[k] for k in ("prompt", "answer", "level")} for r in arith_rows(40)]
    model, tokenizer = tiny_causal_lm()
    steps, temperature = 2, 0.7
    args = GRPOConfig(
        output_dir=os.path.join(os.environ["CURATOR_TEST_DIR"], "out"), use_cpu=True,
        report_to=[], save_strategy="no", max_steps=steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, num_generations=4, max_completion_length=6,
        temperature=temperature, learning_rate=1e-2, disable_dropout=True, bf16=False,
        gradient_checkpointing=True, logging_steps=100, disable_tqdm=True,
        dataloader_num_workers=0, seed=0)
    trainer = CuratorGRPOTrainer(model=model, reward_funcs=_reward, args=args,
                                 train_dataset=datasets.Dataset.from_list(rows),
                                 processing_class=tokenizer, curator_run=run,
                                 curator_strict=True)

    def snapshot():
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    generations, after_step = [], {}
    generate = trainer._generate_and_score_completions

    def spy_generate(inputs):
        before = snapshot()
        out = generate(inputs)
        generations.append((before, {k: out[k] for k in (
            "prompt_ids", "prompt_mask", "completion_ids", "completion_mask")},
            [int(x[INDEX_COLUMN]) for x in inputs]))
        return out

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            after_step[state.global_step] = snapshot()

    trainer._generate_and_score_completions = spy_generate
    trainer.add_callback(Snapshots())
    trainer.train()
    # one generation batch per optimizer step: π_new = the weights after step k + 1
    mine = [{"indices": indices,
             "direct": _direct_log_ratios(after_step[k + 1], before, out, temperature)}
            for k, (before, out, indices) in enumerate(generations)]
    every = gather_object([mine])
    if trainer.accelerator.is_main_process:
        with open(os.environ["CURATOR_TEST_OUT"], "w") as f:
            json.dump({
                "processes": len(every),
                "generations": [[p[k] for p in every] for k in range(len(generations))],
                "issued": [{"ticket_id": b.ticket_id,
                            "problem_ids": [p.problem_id for p in b.problems],
                            "indices": [trainer.curator.index_map.index(p.external_id)
                                        for p in b.problems]}
                           for b in issued[:len(generations)]],
                "sent": sent,
            }, f)
    client.close()
    # tear the process group down before exit rather than leave it to the interpreter
    trainer.accelerator.wait_for_everyone()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    _two_process_worker()


def test_an_untested_trl_is_refused_with_the_range(monkeypatch) -> None:
    from curator_client.integrations.trl import TRL_RANGE, check_trl_version

    monkeypatch.delenv("CURATOR_ALLOW_UNTESTED_TRL", raising=False)
    check_trl_version("1.16.0")
    check_trl_version("1.16.7")
    for version in ("1.15.0", "1.17.0", "2.0.0"):
        with pytest.raises(ImportError, match=re.escape(TRL_RANGE)):
            check_trl_version(version)
    monkeypatch.setenv("CURATOR_ALLOW_UNTESTED_TRL", "1")
    check_trl_version("1.17.0")  # warned, allowed

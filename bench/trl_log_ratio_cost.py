"""Cost of `CuratorGRPOTrainer(curator_log_ratios=True)`: its one extra no-grad forward
over each generation batch's completions, against the rewards-only trainer.

Trains the tiny random GPT-2 of the integration tests on the CPU against a real Curator
service (uvicorn subprocess, SQLite, embedded worker), alternating fresh trainers with
the option on and off (`--reps` each, order swapped every rep, same seed and config),
and times every optimizer step (generation + loss forward/backward + the log-ratio pass
+ the feedback call) after the first of each trainer. fp32 (no bf16 autocast on a CPU)
and dropout off, so the pass draws no random numbers (the two settings still select
different prompts after a few steps: the curriculum learns from different feedback).
Prints the medians, their ratio, the log-ratio pass's own median time and the share of
the step generation takes here, then the estimate for a larger model (`estimate`, and
`worked_example` for a 0.5B policy on one GPU, from stated assumptions).

    python bench/trl_log_ratio_cost.py [--reps 3] [--steps 8] [--completion 32]

Both wall and process CPU time are reported (torch on one thread). On a shared, loaded
machine the on/off ratio of medians moves by several percent between runs; the paired
figure (the pass over the rest of the same step) is the steadier one. The tiny model's
step is mostly Python overhead, not FLOPs: read the estimate for a real model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, server  # noqa: E402

for extra in (ROOT / "service", ROOT / "client", ROOT):
    sys.path.insert(0, str(extra))

ADMIN = "bench-admin"


def estimate(generation_share: float, iterations: int = 1, forward_vs_train: float = 1 / 3
             ) -> float:
    """Extra time of the log-ratio pass as a fraction of (generation + training).

    One no-grad forward over the completions costs `forward_vs_train` of one training
    pass (forward + backward) over the same tokens: 1/3 by FLOPs (2N vs 6N per token),
    1/4 with gradient checkpointing (its backward re-runs the forward). Training makes
    `iterations` such passes per generation batch and takes `1 - generation_share` of
    the step, so the extra is (1 - g) * forward_vs_train / iterations.
    """
    return (1.0 - generation_share) * forward_vs_train / iterations


def worked_example(params: float = 0.494e9, rollouts: int = 64, prompt_tokens: int = 200,
                   completion_tokens: int = 512, peak_tflops: float = 989.0,
                   mfu: float = 0.3, decode_ms: dict[str, float] | None = None
                   ) -> list[str]:
    """The log-ratio pass for a 0.5B policy (Qwen2.5-0.5B: 494M parameters, LM head
    included) on one H100-class GPU, from stated assumptions rather than a measurement:

    - a forward costs 2·params FLOPs per token, forward + backward 6·params, both at the
      same model FLOP utilisation `mfu` of a bf16 dense peak `peak_tflops`;
    - one generation batch of `rollouts` rollouts, `prompt_tokens` + `completion_tokens`
      each, one training pass over it (num_iterations=1), completions run to full length;
    - decoding is latency-bound: one step of the whole batch takes `decode_ms` (HF
      `generate` in eager mode ~20 ms for 24 layers; vLLM ~5 ms), times completion_tokens.
    """
    decode_ms = decode_ms or {"HF generate": 20.0, "vLLM": 5.0}
    tokens = rollouts * (prompt_tokens + completion_tokens)
    flops_per_s = peak_tflops * 1e12 * mfu
    forward = 2 * params * tokens / flops_per_s
    train = 3 * forward
    lines = [f"Worked example (assumptions in `worked_example`): {rollouts} rollouts x "
             f"({prompt_tokens} + {completion_tokens}) tokens, {params / 1e9:.3f}B params, "
             f"{mfu:.0%} MFU of {peak_tflops:.0f} TFLOP/s:",
             f"  training pass {train * 1e3:.0f} ms, log-ratio pass {forward * 1e3:.0f} ms"]
    for name, ms in decode_ms.items():
        gen = completion_tokens * ms / 1e3
        lines.append(f"  {name} ({ms:.0f} ms per decode step): generation {gen:.1f} s, "
                     f"g = {gen / (gen + train):.0%}, extra = {forward / (gen + train):.1%} "
                     "of a step")
    return lines


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since `t0`: this process's CPU time barely moves when other
    processes load the machine, its wall time does."""
    wall, cpu = _now()
    return wall - t0[0], cpu - t0[1]


def train_once(url: str, run_name: str, *, log_ratios: bool, steps: int, completion: int,
               batch: int, accumulation: int, group: int
               ) -> dict[str, list[tuple[float, float]]]:
    import datasets
    from tests.integrations.helpers import arith_rows, tiny_causal_lm
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from curator_client import Client
    from curator_client.integrations.datasets import add_dataset
    from curator_client.integrations.trl import CuratorGRPOTrainer

    rows = [{k: r[k] for k in ("prompt", "answer", "level")} for r in arith_rows(400)]
    dataset = datasets.Dataset.from_list(rows)
    client = Client(url, token=ADMIN)
    bank = client.create_bank(run_name)
    add_dataset(client, bank.bank_id, dataset, metadata_fields=["level"])
    run = client.create_run(bank.bank_id, strategy="actor_curator", seed=0)

    def reward(completions, answer, **kwargs):
        return [float(c.strip().startswith(a)) + 0.1 * sum(ch.isdigit() for ch in c)
                for c, a in zip(completions, answer)]

    model, tokenizer = tiny_causal_lm()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, use_cpu=True, report_to=[], save_strategy="no", max_steps=steps,
            per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
            num_generations=group, max_completion_length=completion, learning_rate=1e-3,
            bf16=False, disable_dropout=True, logging_steps=10_000, disable_tqdm=True,
            dataloader_num_workers=0, seed=0)
        trainer = CuratorGRPOTrainer(model=model, reward_funcs=reward, args=args,
                                     train_dataset=dataset, processing_class=tokenizer,
                                     curator_run=run, curator_log_ratios=log_ratios)
        times: dict[str, list[tuple[float, float]]] = {"step": [], "generate": [],
                                                        "log_ratio_pass": []}
        generate = trainer._generate_and_score_completions

        def timed_generate(inputs):
            t0 = _now()
            output = generate(inputs)
            times["generate"].append(_since(t0))
            return output

        trainer._generate_and_score_completions = timed_generate
        callback = trainer.curator_callback
        if callback.before_report is not None:
            score = callback.before_report

            def timed_score(**kwargs):
                t0 = _now()
                score(**kwargs)
                times["log_ratio_pass"].append(_since(t0))

            callback.before_report = timed_score

        class StepTimer(TrainerCallback):  # added after Curator's: its pass is inside
            start = (0.0, 0.0)

            def on_step_begin(self, args, state, control, **kwargs):
                self.start = _now()

            def on_step_end(self, args, state, control, **kwargs):
                times["step"].append(_since(self.start))

        trainer.add_callback(StepTimer())
        trainer.train()
    client.close()
    return {k: v[1:] for k, v in times.items()}  # the first step warms caches up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="trainers per setting")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per trainer")
    ap.add_argument("--completion", type=int, default=32, help="max_completion_length")
    ap.add_argument("--batch", type=int, default=16, help="per_device_train_batch_size")
    ap.add_argument("--accumulation", type=int, default=2)
    ap.add_argument("--group", type=int, default=8, help="num_generations")
    args = ap.parse_args()

    import torch

    from curator.cli import migrate
    from curator.core.config import Settings

    torch.set_num_threads(1)  # CPU time = the work done, whatever else runs on the box
    keys = ("step", "generate", "log_ratio_pass")
    on: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    off: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'curator.db'}"
        migrate(Settings(database_url=db, data_dir=Path(tmp) / "data"))
        env = {"CURATOR_DATABASE_URL": db, "CURATOR_DATA_DIR": str(Path(tmp) / "data"),
               "CURATOR_ADMIN_TOKEN": ADMIN, "CURATOR_DEVICE": "cpu", "CURATOR_REDIS_URL": "",
               "CURATOR_EMBEDDED_WORKER": "true", "CURATOR_LOG_LEVEL": "warning"}
        with server(env) as url:
            for rep in range(args.reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                for flag in order:
                    got = train_once(url, f"cost-{rep}-{int(flag)}", log_ratios=flag,
                                     steps=args.steps, completion=args.completion,
                                     batch=args.batch, accumulation=args.accumulation,
                                     group=args.group)
                    for k, v in got.items():
                        (on if flag else off)[k].extend(v)

    rollouts = args.batch * args.accumulation
    print(f"tiny GPT-2 (2 layers, 32 wide), CPU, 1 torch thread: {rollouts} rollouts per "
          f"optimizer step (one generation batch), completions <= {args.completion} tokens, "
          f"{args.reps} trainers x {args.steps - 1} timed steps per setting, medians")
    for j, clock in enumerate(("CPU", "wall")):
        med = {name: {k: statistics.median(x[j] for x in v) for k, v in d.items() if v}
               for name, d in (("on", on), ("off", off))}
        # paired, per step of the trainers with the option on: the pass over the rest
        paired = statistics.median(p[j] / (s[j] - p[j]) for s, p in zip(
            on["step"], on["log_ratio_pass"]))
        share = med["off"]["generate"] / med["off"]["step"]
        ratio = med["on"]["step"] / med["off"]["step"]
        print(f"  [{clock:>4} time] step off {med['off']['step'] * 1e3:7.1f} ms, on "
              f"{med['on']['step'] * 1e3:7.1f} ms (ratio {ratio:.3f});"
              f" log-ratio pass {med['on']['log_ratio_pass'] * 1e3:6.1f} ms = "
              f"{paired:+.1%} of its step (paired); generation {share:.0%} of a step")
        print(f"              generate+score off {med['off']['generate'] * 1e3:7.1f} ms, on "
              f"{med['on']['generate'] * 1e3:7.1f} ms")
    print()
    print("Estimate for a ~0.5B model (FLOP-bound, e.g. Qwen2.5-0.5B on one GPU): the pass is "
          "one forward\nover the completions = 1/3 of a training pass (1/4 with gradient "
          "checkpointing), and generation\ntakes a share g of (generation + training):")
    print("  g (generation share)    extra, 1 iteration    extra, grad. checkpointing    "
          "extra, num_iterations=2")
    for g in (0.5, 0.6, 0.7, 0.8, 0.9):
        print(f"  {g:>10.0%}              {estimate(g):>8.1%}              "
              f"{estimate(g, forward_vs_train=1 / 4):>8.1%}                    "
              f"{estimate(g, iterations=2):>8.1%}")
    print()
    print("\n".join(worked_example()))


if __name__ == "__main__":
    main()

"""`curator sim`: compare curriculum strategies on the synthetic student.

    curator sim --strategies uniform,learnability,sec,pcl,actor_curator --seeds 5 \\
        --steps 150 --batch-size 64 --pool-size 512 --rollouts 8 --out artifacts/sim
    curator sim --url http://127.0.0.1:8000 --token $CURATOR_ADMIN_TOKEN ...
    curator sim --params actor_curator:lr=0.01 --params sec:temperature=0.5 ...
    curator sim --student lr=0.5 --student trap_harm=0 ...      # another student

Writes OUT/sim.png, OUT/sim.md and OUT/sim.json. Without --url the service runs
in-process (fresh SQLite in a temporary directory). Defaults are sized so that the five
strategies × 5 seeds finish in about 6 minutes on a 2-core CPU (see
bench/sim_defaults.md); the paper's M = 2048, B = 256 work too, just slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from curator.sim.bank import BankConfig
from curator.sim.runner import STRATEGIES
from curator.sim.student import StudentConfig
from curator.sim.trainer import TrainerConfig


def _value(text: str) -> Any:
    """JSON scalar if it parses (1e-3, true, 20), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items: list[str] | None, strategies: list[str]) -> dict[str, dict[str, Any]]:
    """["actor_curator:lr=0.01", ...] → {"actor_curator": {"lr": 0.01}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        head, sep, value = item.partition("=")
        strategy, colon, key = head.partition(":")
        if not (sep and colon and strategy and key):
            raise ValueError(f"--params {item!r}: expected STRATEGY:KEY=VALUE")
        if strategy not in strategies:
            raise ValueError(f"--params {item!r}: strategy {strategy!r} is not in --strategies")
        out.setdefault(strategy, {})[key] = _value(value)
    return out


def parse_student(items: list[str] | None) -> StudentConfig:
    """["lr=0.5", "trap_harm=0"] → StudentConfig with those fields replaced."""
    fields = {f.name: f for f in dataclasses.fields(StudentConfig)}
    values: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--student {item!r}: expected KEY=VALUE with KEY one of "
                             f"{sorted(fields)}")
        values[key] = float(value)
    cfg = dataclasses.replace(StudentConfig(), **values)
    cfg.validate()
    return cfg


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    d_t, d_b = TrainerConfig(), BankConfig()
    p = subparsers.add_parser(
        "sim", help="compare strategies on a synthetic student (real service, real client)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default: 5)")
    p.add_argument("--seed-base", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--steps", type=int, default=d_t.steps)
    p.add_argument("--batch-size", type=int, default=d_t.batch_size, help="B")
    p.add_argument("--pool-size", type=int, default=d_t.pool_size, help="M")
    p.add_argument("--rollouts", type=int, default=d_t.rollouts, help="G")
    p.add_argument("--eval-every", type=int, default=d_t.eval_every)
    p.add_argument("--problems", type=int, default=d_b.n_problems, help="bank size")
    p.add_argument("--skills", type=int, default=d_b.n_skills)
    p.add_argument("--dim", type=int, default=d_b.dim, help="embedding dimension")
    p.add_argument("--trap-share", type=float, default=d_b.trap_share)
    p.add_argument("--hard-share", type=float, default=d_b.hard_share)
    p.add_argument("--heldout", type=int, default=d_b.n_heldout, help="held-out set size")
    p.add_argument("--bank-seed", type=int, default=0)
    p.add_argument("--params", action="append", metavar="STRATEGY:KEY=VALUE",
                   help="strategy parameter override (repeatable)")
    p.add_argument("--student", action="append", metavar="KEY=VALUE",
                   help="student parameter override, e.g. lr=0.5 (repeatable; see "
                        "curator.sim.student.StudentConfig)")
    p.add_argument("--target", type=float, default=None,
                   help="absolute held-out accuracy target (default: uniform's final "
                        "accuracy for the same seed)")
    p.add_argument("--url", default=None, help="use a running service instead of in-process")
    p.add_argument("--token", default=None,
                   help="admin token for --url (default: CURATOR_ADMIN_TOKEN)")
    p.add_argument("--no-sync-feedback", action="store_true",
                   help="do not wait for the worker to apply each batch's feedback")
    p.add_argument("--out", default="artifacts/sim", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=run_sim)
    return p


def run_sim(args: argparse.Namespace, settings: Any) -> int:
    from curator.sim.report import write_report
    from curator.sim.runner import compare

    # one line per HTTP request (httpx logs at INFO) would bury the progress bar
    for name in ("httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        if not strategies:
            raise ValueError("--strategies is empty")
        if args.seeds < 1:
            raise ValueError("--seeds must be ≥ 1")
        params = parse_params(args.params, strategies)
        student = parse_student(args.student)
        trainer = TrainerConfig(steps=args.steps, batch_size=args.batch_size,
                                pool_size=args.pool_size, rollouts=args.rollouts,
                                eval_every=args.eval_every,
                                sync_feedback=not args.no_sync_feedback)
        trainer.validate()
        bank = dataclasses.replace(BankConfig(), n_problems=args.problems, n_skills=args.skills,
                                   dim=args.dim, trap_share=args.trap_share,
                                   hard_share=args.hard_share, n_heldout=args.heldout)
        bank.validate()
    except ValueError as exc:
        print(f"curator sim: {exc}", file=sys.stderr)
        return 2
    token = args.token or getattr(settings, "admin_token", None)
    if args.url and not token:
        print("curator sim: --url needs --token (or CURATOR_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    from curator.sim.trainer import SyncTimeout
    from curator_client import CuratorError

    device = "cpu" if args.url else str(getattr(settings, "device", "cpu"))
    try:
        result = compare(strategies, list(range(args.seed_base, args.seed_base + args.seeds)),
                         trainer=trainer, bank_config=bank, student=student, params=params,
                         bank_seed=args.bank_seed, url=args.url,
                         token=token if args.url else None, device=device,
                         progress=not args.quiet)
    except (CuratorError, SyncTimeout) as exc:  # e.g. a bad --params value (HTTP 422)
        print(f"curator sim: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    write_report(result, out, target=args.target)
    print((out / "sim.md").read_text())
    print(f"wrote {out / 'sim.png'}, {out / 'sim.md'}, {out / 'sim.json'}")
    return 0

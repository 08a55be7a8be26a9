"""`curator sim`: compare curriculum strategies on the synthetic student.

    curator sim --scenario all --seeds 5 --out artifacts/sim     # the scenario family
    curator sim --scenario ring,traps --scenario chain --jobs 2 --steps 200
    curator sim --scenario traps --engine http --strategies uniform,sec   # real service
    curator sim --strategies uniform,learnability,sec,pcl,actor_curator --seeds 5 \\
        --steps 150 --batch-size 64 --pool-size 512 --rollouts 8 --out artifacts/sim
    curator sim --url http://127.0.0.1:8000 --token $CURATOR_ADMIN_TOKEN ...
    curator sim --params actor_curator:lr=0.01 --params sec:temperature=0.5 ...
    curator sim --student lr=0.5 --student trap_harm=0 ...      # another student

Writes OUT/sim.png, OUT/sim.md and OUT/sim.json. Without --url the service runs
in-process (fresh SQLite in a temporary directory). Defaults are sized so that the five
strategies × 5 seeds finish in about 6 minutes on a 2-core CPU (see
bench/sim_defaults.md); the paper's M = 2048, B = 256 work too, just slower.

With --scenario (scenarios.py; repeatable, comma-separated, or `all`) each named
scenario brings its bank, student, embedder and run length; --steps, --batch-size,
--pool-size, --rollouts, --eval-every, --seeds, --seed-base, --strategies and --params
still override. The default engine is then `direct` (the service's selection and update
code in-process, no HTTP; --jobs processes), and the default strategies include the
ground-truth `oracle` (direct engine only). Writes OUT/<scenario>/sim.{png,md,json} and
OUT/family.{md,json,png} with a verdict per scenario (family.py). Text banks are embedded
once and cached under --cache-dir (default OUT/cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curator.sim.bank import BankConfig
from curator.sim.runner import ENGINES, FAMILY_STRATEGIES, ORACLE, STRATEGIES
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


BANK_FLAGS = {"problems": "n_problems", "skills": "n_skills", "dim": "dim",
              "trap_share": "trap_share", "hard_share": "hard_share", "heldout": "n_heldout"}
TRAINER_FLAGS = ("steps", "batch_size", "pool_size", "rollouts", "eval_every")


def parse_scenarios(items: list[str] | None) -> list[Any]:
    """["ring,traps", "chain"] or ["all"] → Scenario objects, in order, no repeats."""
    from curator.sim.scenarios import SCENARIOS, get_scenario

    names: list[str] = []
    for item in items or []:
        for name in (n.strip() for n in item.split(",")):
            for n in (list(SCENARIOS) if name == "all" else [name] if name else []):
                if n not in names:
                    names.append(n)
    if not names:
        raise ValueError("--scenario names no scenario")
    return [get_scenario(n) for n in names]


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    d_t, d_b = TrainerConfig(), BankConfig()
    p = subparsers.add_parser(
        "sim", help="compare strategies on a synthetic student (real service, real client)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", metavar="NAME[,NAME...]",
                   help="named scenario(s) to run, or `all` (repeatable)")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="direct: in-process selection/update code, no HTTP; http: the "
                        "service (in-process, or --url). Default: direct with --scenario, "
                        "http without")
    p.add_argument("--jobs", type=int, default=2,
                   help="parallel processes for the direct engine (default: %(default)s)")
    p.add_argument("--cache-dir", default=None,
                   help="where text-bank embeddings are kept (default: OUT/cache)")
    p.add_argument("--strategies", default=None,
                   help=f"comma-separated (default: {','.join(STRATEGIES)}; with --scenario "
                        f"also {ORACLE})")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default: 5)")
    p.add_argument("--seed-base", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"default: {d_t.steps}, or the scenario's (400)")
    p.add_argument("--batch-size", type=int, default=None, help=f"B (default: {d_t.batch_size})")
    p.add_argument("--pool-size", type=int, default=None, help=f"M (default: {d_t.pool_size})")
    p.add_argument("--rollouts", type=int, default=None, help=f"G (default: {d_t.rollouts})")
    p.add_argument("--eval-every", type=int, default=None,
                   help=f"default: {d_t.eval_every}")
    bank = p.add_argument_group("bank and student (without --scenario; a scenario fixes them)")
    bank.add_argument("--problems", type=int, default=None,
                      help=f"bank size (default: {d_b.n_problems})")
    bank.add_argument("--skills", type=int, default=None, help=f"default: {d_b.n_skills}")
    bank.add_argument("--dim", type=int, default=None,
                      help=f"embedding dimension (default: {d_b.dim})")
    bank.add_argument("--trap-share", type=float, default=None,
                      help=f"default: {d_b.trap_share}")
    bank.add_argument("--hard-share", type=float, default=None,
                      help=f"default: {d_b.hard_share}")
    bank.add_argument("--heldout", type=int, default=None,
                      help=f"held-out set size (default: {d_b.n_heldout})")
    bank.add_argument("--student", action="append", metavar="KEY=VALUE",
                      help="student parameter override, e.g. lr=0.5 (repeatable; see "
                           "curator.sim.student.StudentConfig)")
    bank.add_argument("--target", type=float, default=None,
                      help="absolute held-out accuracy target (default: uniform's final "
                           "accuracy for the same seed)")
    p.add_argument("--bank-seed", type=int, default=0)
    p.add_argument("--params", action="append", metavar="STRATEGY:KEY=VALUE",
                   help="strategy parameter override (repeatable)")
    p.add_argument("--url", default=None, help="use a running service instead of in-process")
    p.add_argument("--token", default=None,
                   help="admin token for --url (default: CURATOR_ADMIN_TOKEN)")
    p.add_argument("--no-sync-feedback", action="store_true",
                   help="do not wait for the worker to apply each batch's feedback")
    p.add_argument("--out", default="artifacts/sim", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rewards-only", action="store_true",
                   help="report rewards without log-ratios, as TRL and verl do today (the "
                        "service then computes its rewards-only utility)")
    p.set_defaults(fn=run_sim)
    return p


def _trainer(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
             ) -> TrainerConfig:
    """TrainerConfig from the flags given; `defaults` (a scenario's run length, batch,
    evaluation interval) fill what the flags leave out."""
    given = {k: getattr(args, k) for k in TRAINER_FLAGS if getattr(args, k) is not None}
    for k, v in (defaults or {}).items():
        given.setdefault(k, v)
    cfg = dataclasses.replace(TrainerConfig(), sync_feedback=not args.no_sync_feedback,
                              rewards_only=args.rewards_only, **given)
    cfg.validate()
    return cfg


def _strategies(args: argparse.Namespace, default: tuple[str, ...]) -> list[str]:
    if args.strategies is None:
        return list(default)
    from curator.curation.strategies import STRATEGIES as KNOWN

    out = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not out:
        raise ValueError("--strategies is empty")
    unknown = [s for s in out if s not in KNOWN and s != ORACLE]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from "
                         f"{', '.join([*sorted(KNOWN), ORACLE])}")
    return out


def _check(args: argparse.Namespace, settings: Any) -> tuple[str, str | None]:
    """(engine, token) after the checks every mode shares."""
    if args.seeds < 1:
        raise ValueError("--seeds must be ≥ 1")
    if args.jobs < 1:
        raise ValueError("--jobs must be ≥ 1")
    engine = args.engine or ("direct" if args.scenario and not args.url else "http")
    if engine == "direct" and args.url:
        raise ValueError("--url needs --engine http")
    token = args.token or getattr(settings, "admin_token", None)
    if args.url and not token:
        raise ValueError("--url needs --token (or CURATOR_ADMIN_TOKEN)")
    return engine, token


def run_sim(args: argparse.Namespace, settings: Any) -> int:
    # one line per HTTP request (httpx logs at INFO) would bury the progress bar
    for name in ("httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        engine, token = _check(args, settings)
    except ValueError as exc:
        print(f"curator sim: {exc}", file=sys.stderr)
        return 2
    if args.scenario:
        return _run_family(args, settings, engine, token)
    return _run_single(args, settings, engine, token)


def _run_single(args: argparse.Namespace, settings: Any, engine: str,
                token: str | None) -> int:
    """No --scenario: one comparison on the bank and student the flags describe."""
    from curator.sim.report import write_report
    from curator.sim.runner import compare

    try:
        strategies = _strategies(args, STRATEGIES)
        params = parse_params(args.params, strategies)
        student = parse_student(args.student)
        trainer = _trainer(args)
        given = {f: getattr(args, k) for k, f in BANK_FLAGS.items()
                 if getattr(args, k) is not None}
        bank = dataclasses.replace(BankConfig(), **given)
        bank.validate()
        if engine == "http" and ORACLE in strategies:
            raise ValueError(f"{ORACLE!r} runs with --engine direct only")
    except ValueError as exc:
        print(f"curator sim: {exc}", file=sys.stderr)
        return 2
    from curator.sim.trainer import SyncTimeout
    from curator_client import CuratorError

    seeds = list(range(args.seed_base, args.seed_base + args.seeds))
    device = "cpu" if args.url else str(getattr(settings, "device", "cpu"))
    try:
        if engine == "direct":
            result = _run_custom_direct(args, bank, student, trainer, strategies, params, seeds)
        else:
            result = compare(strategies, seeds, trainer=trainer, bank_config=bank,
                             student=student, params=params, bank_seed=args.bank_seed,
                             url=args.url, token=token if args.url else None, device=device,
                             progress=not args.quiet)
    except (CuratorError, SyncTimeout, ValueError) as exc:  # e.g. a bad --params value
        print(f"curator sim: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    write_report(result, out, target=args.target)
    print((out / "sim.md").read_text())
    print(f"wrote {out / 'sim.png'}, {out / 'sim.md'}, {out / 'sim.json'}")
    return 0


def _run_custom_direct(args: argparse.Namespace, bank: BankConfig, student: StudentConfig,
                       trainer: TrainerConfig, strategies: list[str],
                       params: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """The flags' bank and student as an ad-hoc scenario, through the direct engine."""
    from curator.sim.runner import run_scenarios
    from curator.sim.scenarios import Scenario

    custom = Scenario(name="custom", summary="the bank and student given by the flags",
                      bank=bank, student=student, steps=trainer.steps)
    results = run_scenarios([custom], strategies, seeds, trainers={"custom": trainer},
                            params=params, bank_seed=args.bank_seed, engine="direct",
                            jobs=args.jobs, cache_dir=args.cache_dir, progress=not args.quiet)
    result = results["custom"]
    result.pop("scenario")
    return result


def _run_family(args: argparse.Namespace, settings: Any, engine: str,
                token: str | None) -> int:
    """--scenario: every strategy × seed on each scenario, then the family report."""
    from curator.sim.family import write_family
    from curator.sim.runner import run_scenarios

    fixed = [f"--{k.replace('_', '-')}" for k in (*BANK_FLAGS, "student", "target")
             if getattr(args, k) is not None]
    try:
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: a scenario fixes its bank, student and "
                             "target; drop --scenario to set them")
        scenarios = parse_scenarios(args.scenario)
        strategies = _strategies(args, FAMILY_STRATEGIES)
        if engine == "http" and ORACLE in strategies:
            strategies.remove(ORACLE)
            print(f"curator sim: note: {ORACLE!r} reads the simulator's ground truth and runs "
                  "with the direct engine only; dropped for --engine http", file=sys.stderr)
            if not strategies:
                raise ValueError("no strategy left to run")
        params = parse_params(args.params, strategies)
        trainers = {sc.name: _trainer(args, sc.trainer_defaults()) for sc in scenarios}
    except ValueError as exc:
        print(f"curator sim: {exc}", file=sys.stderr)
        return 2
    from curator.sim.trainer import SyncTimeout
    from curator_client import CuratorError

    out = Path(args.out)
    device = "cpu" if args.url else str(getattr(settings, "device", "cpu"))
    try:
        results = run_scenarios(
            scenarios, strategies, list(range(args.seed_base, args.seed_base + args.seeds)),
            trainers=trainers, params=params, bank_seed=args.bank_seed, engine=engine,
            jobs=args.jobs, cache_dir=args.cache_dir or out / "cache", url=args.url,
            token=token if args.url else None, device=device, progress=not args.quiet)
    except (CuratorError, SyncTimeout, ValueError) as exc:
        print(f"curator sim: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    write_family(results, out)
    print((out / "family.md").read_text())
    print(f"wrote {out / 'family.md'}, {out / 'family.json'}, {out / 'family.png'} and "
          f"OUT/<scenario>/sim.{{md,json,png}} for {', '.join(results)} (OUT = {out})")
    return 0

"""Run a comparison: strategies × seeds on one shared bank, against a real service; or
a family: strategies × seeds on each of several named scenarios (`run_scenarios`).

By default the service runs in-process: `curator.app.create_app(Settings(...))` under
uvicorn on a free loopback port in a background thread, with a fresh SQLite database in a
temporary data dir, the embedded worker, and a generated admin token — nothing of the
user's own data dir or database is touched. Or point it at a running service with `url`
and an admin `token`.

The bank is drawn once per comparison (seed `bank_seed`) and uploaded once; every run
of every strategy trains on the same problems. For seed s every strategy starts from the
same student (abilities and per-skill learning rates drawn from s) and the service run
gets seed s.

`run_scenarios` runs the same grid on each scenario (scenarios.py: its own bank, student,
embedder and run length), with the direct engine (direct.py: the service's exact
selection and update code in-process, ~10× faster, and the ground-truth `oracle`) in
parallel processes, or over HTTP against one service for a check of the real path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curator.sim.bank import BankConfig, SimBank, make_bank
from curator.sim.scenarios import Scenario
from curator.sim.student import StudentConfig
from curator.sim.trainer import RunRecord, TrainerConfig, simulate_run

STRATEGIES = ("uniform", "learnability", "sec", "pcl", "mopps", "actor_curator")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_service(*, device: str = "cpu", data_dir: Path | None = None,
                  startup_timeout: float = 60.0) -> Iterator[tuple[str, str]]:
    """Start the real app in a background thread; yields (base_url, admin_token)."""
    import uvicorn

    from curator.app import create_app
    from curator.core.config import Settings
    from curator.db.migrate import upgrade

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="curator-sim-")))
        token = "adm_sim_" + secrets.token_urlsafe(18)
        settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'sim.db'}",
                            redis_url=None, admin_token=token, device=device,
                            embedded_worker=True, log_level="warning", mode="dev")
        upgrade(settings.sqlalchemy_url)
        port = _free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="curator-sim-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("the in-process Curator service did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}", token
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def upload_bank(client: Any, bank: SimBank, name: str | None = None,
                embedder: str = "provided") -> tuple[int, dict[int, int]]:
    """Create a bank with the training problems; returns (bank_id, {problem_id: index
    into bank.train}). A provided-feature bank uploads its vectors; a text bank uploads
    prompts only and the server embeds them with `embedder` ("hash" or "minilm"), as it
    would a real dataset."""
    name = name or f"sim-{uuid.uuid4().hex[:10]}"
    if bank.is_text:
        if embedder == "provided":
            raise ValueError("a text bank needs a server embedder ('hash' or 'minilm')")
        created = client.create_bank(name, embedder=embedder)
        chunk = 500  # the server embeds each request's prompts before answering
    else:
        created = client.create_bank(name, embedder="provided", dim=bank.config.dim)
        chunk = 5000
    result = client.add_problems(created.bank_id, bank.problems(), chunk_size=chunk)
    if result.added != len(bank.train) or len(result.problem_ids) != len(bank.train):
        raise RuntimeError(f"bank upload: {result.added} of {len(bank.train)} problems added")
    return created.bank_id, {int(pid): i for i, pid in enumerate(result.problem_ids)}


def compare(
    strategies: Sequence[str] = STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    trainer: TrainerConfig | None = None,
    bank_config: BankConfig | None = None,
    student: StudentConfig | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    bank_seed: int = 0,
    url: str | None = None,
    token: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Run every strategy for every seed; returns the raw comparison (see report.py)."""
    from tqdm import tqdm

    from curator_client import Client

    trainer = trainer or TrainerConfig()
    trainer.validate()
    student = student or StudentConfig()
    student.validate()
    params = {k: dict(v) for k, v in (params or {}).items()}
    unknown = sorted(set(params) - set(strategies))
    if unknown:
        raise ValueError(f"--params given for strategies not being run: {unknown}")
    t0 = time.perf_counter()
    remote = url
    bank = make_bank(bank_config, bank_seed)

    with contextlib.ExitStack() as stack:
        if url is None:
            url, token = stack.enter_context(local_service(device=device))
        client = stack.enter_context(Client(url, token=token, timeout=120.0))
        t_up = time.perf_counter()
        bank_id, id_map = upload_bank(client, bank)
        upload_s = time.perf_counter() - t_up
        runs: list[RunRecord] = []
        total = len(strategies) * len(seeds) * trainer.steps
        with tqdm(total=total, desc="sim", unit="step", disable=not progress,
                  dynamic_ncols=True) as bar:
            for seed in seeds:
                for name in strategies:
                    bar.set_postfix_str(f"{name} seed {seed}")
                    rec = simulate_run(client, bank_id, bank, id_map, name, seed=seed,
                                       params=params.get(name), trainer=trainer,
                                       student=student, on_step=lambda _s: bar.update(1))
                    runs.append(rec)
    return {
        "strategies": list(strategies),
        "seeds": list(seeds),
        "trainer": asdict(trainer),
        "student": student.to_dict(),
        "bank": bank.summary(),
        "params": params,
        "service": remote or "in-process",
        "upload_seconds": upload_s,
        "wall_seconds": time.perf_counter() - t0,
        "runs": [r.to_dict() for r in runs],
    }



# -- scenario families: every strategy × seed on each named scenario ---------------------

ORACLE = "oracle"  # = curator.sim.direct.ORACLE, spelled out: importing direct pulls in torch
FAMILY_STRATEGIES = (*STRATEGIES, ORACLE)
ENGINES = ("direct", "http")


@dataclass(frozen=True)
class Job:
    """One run of a family; the scenario travels whole so an ad-hoc one works too."""

    scenario: Scenario
    strategy: str
    seed: int


def features_file(scenario: Scenario, bank_seed: int, cache_dir: Path) -> Path | None:
    """For a text bank, embed the prompts once here and keep the vectors in a .npy file
    that every worker loads (MiniLM takes minutes on a CPU; the file is reused by later
    runs with the same bank); None for a provided-feature bank (workers rebuild it fast)."""
    if not scenario.bank.text:
        return None
    key = json.dumps([asdict(scenario.bank), scenario.embedder, bank_seed], sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = cache_dir / f"{scenario.name}-bank{bank_seed}-{scenario.embedder}-{digest}.npy"
    if not path.exists():
        bank = scenario.make_bank(bank_seed)
        feats = scenario.features(bank)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npy")
        np.save(tmp, feats)
        tmp.replace(path)
    return path


_BANKS: dict[tuple[str, int], tuple[SimBank, np.ndarray]] = {}  # per process
_COUNTER: Any = None  # shared step counter (multiprocessing.Value) in pool workers


def _init_worker(counter: Any) -> None:
    """Pool process start: one torch thread per process. Two jobs already fill two cores;
    extra threads only contend (actor_curator, ring: 32 ms/step with one thread, ~590
    with two on the loaded 2-core box)."""
    import torch

    torch.set_num_threads(1)
    global _COUNTER
    _COUNTER = counter


def _tick(_step: int) -> None:
    with _COUNTER.get_lock():
        _COUNTER.value += 1


def _bank(scenario: Scenario, bank_seed: int, feats: Path | None) -> tuple[SimBank, np.ndarray]:
    """The scenario's bank and features, built once per process."""
    key = (scenario.name, bank_seed)
    if key not in _BANKS:
        bank = scenario.make_bank(bank_seed)
        if feats is not None:
            bank.train.features = np.load(feats)
            bank.embedder = scenario.embedder
        _BANKS[key] = (bank, scenario.features(bank))
    return _BANKS[key]


def _direct_job(job: Job, trainer: TrainerConfig, params: Mapping[str, Any] | None,
                bank_seed: int, feats: Path | None,
                on_step: Callable[[int], Any] | None = None) -> dict[str, Any]:
    from curator.sim.direct import simulate_run_direct

    bank, features = _bank(job.scenario, bank_seed, feats)
    if on_step is None and _COUNTER is not None:
        on_step = _tick
    rec = simulate_run_direct(bank, features, job.strategy, seed=job.seed, params=params,
                              trainer=trainer, student=job.scenario.student, on_step=on_step)
    return dict(rec.to_dict(), scenario=job.scenario.name)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_direct(jobs: list[Job], trainers: Mapping[str, TrainerConfig],
                params: Mapping[str, Mapping[str, Any]], bank_seed: int,
                feats: Mapping[str, Path | None], n_procs: int, bar: Any) -> list[dict[str, Any]]:
    """The jobs in `n_procs` spawned processes (in this one for n_procs = 1)."""
    def args(j: Job) -> tuple:
        name = j.scenario.name
        return j, trainers[name], params.get(j.strategy), bank_seed, feats[name]

    if n_procs <= 1:
        try:
            with _one_torch_thread():
                return [_direct_job(*args(j), on_step=lambda _s: bar.update(1)) for j in jobs]
        finally:
            _BANKS.clear()
    ctx = mp.get_context("spawn")  # not fork: the parent may hold torch/MiniLM threads
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(n_procs, mp_context=ctx, initializer=_init_worker,
                             initargs=(counter,)) as pool:
        futures = [pool.submit(_direct_job, *args(j)) for j in jobs]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                bar.update(counter.value - bar.n)
                bar.set_postfix_str(f"{len(futures) - len(pending)}/{len(futures)} runs")
                for f in done:
                    f.result()  # a failed job stops the family now
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return [f.result() for f in futures]


def _run_http(scenarios: Sequence[Scenario], jobs: list[Job],
              trainers: Mapping[str, TrainerConfig], params: Mapping[str, Mapping[str, Any]],
              bank_seed: int, url: str | None, token: str | None, device: str,
              bar: Any) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The jobs one after another against one service (in-process unless `url`)."""
    from curator_client import Client

    runs: list[dict[str, Any]] = []
    uploads: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        if url is None:
            url, token = stack.enter_context(local_service(device=device))
        client = stack.enter_context(Client(url, token=token, timeout=300.0))
        for sc in scenarios:
            bank = sc.make_bank(bank_seed)
            t_up = time.perf_counter()
            bar.set_postfix_str(f"{sc.name}: upload")
            bank_id, id_map = upload_bank(client, bank, f"sim-{sc.name}-{uuid.uuid4().hex[:8]}",
                                          embedder=sc.embedder)
            uploads[sc.name] = time.perf_counter() - t_up
            for j in (j for j in jobs if j.scenario.name == sc.name):
                bar.set_postfix_str(f"{sc.name} {j.strategy} seed {j.seed}")
                rec = simulate_run(client, bank_id, bank, id_map, j.strategy, seed=j.seed,
                                   params=params.get(j.strategy), trainer=trainers[sc.name],
                                   student=sc.student, on_step=lambda _s: bar.update(1))
                runs.append(dict(rec.to_dict(), scenario=sc.name))
    return runs, uploads


def _seeds(scenario: Scenario, seeds: Sequence[int]) -> list[int]:
    """The seeds a scenario runs: all asked, or its first `max_seeds` (a costly student)."""
    return list(seeds)[: scenario.max_seeds] if scenario.max_seeds else list(seeds)


def run_scenarios(
    scenarios: Sequence[Scenario],
    strategies: Sequence[str] = FAMILY_STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    trainers: Mapping[str, TrainerConfig] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    bank_seed: int = 0,
    engine: str = "direct",
    jobs: int = 2,
    cache_dir: Path | str | None = None,
    url: str | None = None,
    token: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Every strategy × seed on every scenario (one bank per scenario, drawn from
    `bank_seed`). Returns {scenario name: a result shaped like `compare`'s, plus
    "scenario" and "engine"}; report.py and family.py read them. `trainers` maps a
    scenario name to its TrainerConfig (default: the scenario's steps, B/M/G defaults)."""
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "http" and ORACLE in strategies:
        raise ValueError("the oracle reads the simulator's ground truth: direct engine only")
    if jobs < 1:
        raise ValueError("jobs must be ≥ 1")
    params = {k: dict(v) for k, v in (params or {}).items()}
    unknown = sorted(set(params) - set(strategies))
    if unknown:
        raise ValueError(f"--params given for strategies not being run: {unknown}")
    trainers = dict(trainers or {})
    for sc in scenarios:
        trainers.setdefault(sc.name, TrainerConfig(**sc.trainer_defaults()))
        trainers[sc.name].validate()
        sc.student.validate()
    work = [Job(sc, name, seed) for sc in scenarios for seed in _seeds(sc, seeds)
            for name in strategies]
    total = sum(trainers[j.scenario.name].steps for j in work)
    t0 = time.perf_counter()
    uploads: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, desc="sim", unit="step",
                                       disable=not progress, dynamic_ncols=True))
        if engine == "direct":
            cache = Path(cache_dir) if cache_dir is not None else Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="curator-sim-")))
            feats = {sc.name: features_file(sc, bank_seed, cache) for sc in scenarios}
            runs = _run_direct(work, trainers, params, bank_seed, feats, jobs, bar)
            service = f"direct engine (no HTTP, {jobs} process{'es' if jobs > 1 else ''})"
        else:
            runs, uploads = _run_http(scenarios, work, trainers, params, bank_seed, url, token,
                                      device, bar)
            service = url or "in-process"
    wall = time.perf_counter() - t0
    order = {name: i for i, name in enumerate(strategies)}
    out: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        mine = sorted((r for r in runs if r["scenario"] == sc.name),
                      key=lambda r: (r["seed"], order[r["strategy"]]))
        out[sc.name] = {
            "scenario": {"name": sc.name, "summary": sc.summary, "embedder": sc.embedder,
                         "steps": sc.steps},
            "engine": engine,
            "strategies": list(strategies),
            "seeds": _seeds(sc, seeds),
            "trainer": asdict(trainers[sc.name]),
            "student": sc.student.to_dict(),
            "bank": sc.make_bank(bank_seed).summary(),
            "bank_seed": bank_seed,
            "params": params,
            "service": service,
            "upload_seconds": uploads.get(sc.name, 0.0),
            "run_seconds": float(sum(r["seconds"] for r in mine)),
            "wall_seconds": wall,
            "runs": mine,
        }
    return out

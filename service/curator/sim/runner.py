"""Run a comparison: strategies × seeds on one shared bank, against a real service.

By default the service runs in-process: `curator.app.create_app(Settings(...))` under
uvicorn on a free loopback port in a background thread, with a fresh SQLite database in a
temporary data dir, the embedded worker, and a generated admin token — nothing of the
user's own data dir or database is touched. Or point it at a running service with `url`
and an admin `token`.

The bank is drawn once per comparison (seed `bank_seed`) and uploaded once; every run
of every strategy trains on the same problems. For seed s every strategy starts from the
same student (abilities and per-skill learning rates drawn from s) and the service run
gets seed s.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from curator.sim.bank import BankConfig, SimBank, make_bank
from curator.sim.student import StudentConfig
from curator.sim.trainer import RunRecord, TrainerConfig, simulate_run

STRATEGIES = ("uniform", "learnability", "sec", "pcl", "actor_curator")


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
    from curator.cli import migrate
    from curator.config import Settings

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="curator-sim-")))
        token = "adm_sim_" + secrets.token_urlsafe(18)
        settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'sim.db'}",
                            redis_url=None, admin_token=token, device=device,
                            embedded_worker=True, log_level="warning", mode="dev")
        migrate(settings)
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


def upload_bank(client: Any, bank: SimBank, name: str | None = None) -> tuple[int, dict[int, int]]:
    """Create a provided-embedding bank with the training problems; returns
    (bank_id, {problem_id: index into bank.train})."""
    name = name or f"sim-{uuid.uuid4().hex[:10]}"
    created = client.create_bank(name, embedder="provided", dim=bank.config.dim)
    result = client.add_problems(created.bank_id, bank.problems(), chunk_size=5000)
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


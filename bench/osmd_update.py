"""Worker time per applied ticket (256 items): actor_curator's OSMD update vs uniform.

In-process, real SQLite: each measured ticket goes select → feedback → `Updater.apply`
(read feedback, strategy update, scoring the next pool, checkpoint write, commit). The
uniform strategy's apply (no learning) in the same run is the baseline; the pure
`strategy.update` time (on a twin of the state the apply starts from, with the same
observations) is shown too, so the share of the rest is visible. Then the newest
checkpoint's two parts (strategy_store.py) and the time to load it for selection (what
an API replica reads) beside loading it whole (the worker).

    python bench/osmd_update.py [--dim 384] [--tickets 30] [--actor-params '{"minibatches": 4}']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "bench-admin"


def replica_load(session_factory, run_id: int, dim: int) -> dict[str, float]:
    """Bytes of the run's newest checkpoint per part, and the median time to load it for
    selection (its selection part: what an API replica reads) and whole (the worker)."""
    from sqlalchemy import func, select

    from curator.db.models import Checkpoint, Run
    from curator.runs.strategy_store import load_selection, load_strategy

    with session_factory() as s:
        run = s.get(Run, run_id)
        sel, rest = s.execute(select(func.length(Checkpoint.selection),
                                     func.length(Checkpoint.blob))
                              .where(Checkpoint.run_id == run_id,
                                     Checkpoint.version == run.model_version)).one()
        times = {}
        for label, load in (("selection", load_selection), ("whole", load_strategy)):
            ts = []
            for _ in range(20):
                t0 = time.perf_counter()
                load(s, run, run.model_version, dim, "cpu")
                ts.append(time.perf_counter() - t0)
            times[f"load_{label}_ms"] = 1e3 * statistics.median(ts)
    return {"selection_kb": sel / 1024, "training_kb": rest / 1024, **times}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--problems", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tickets", type=int, default=30)
    ap.add_argument("--actor-params", default="{}",
                    help='JSON params for the actor_curator run, e.g. \'{"minibatches": 4}\'')
    args = ap.parse_args()

    from curator.app import create_app
    from curator.cli import migrate
    from curator.core.config import Settings
    from curator.runs import apply
    from curator.runs.feedback import ResultRecord, record_feedback
    from curator.runs.selection import select_batch
    from curator.runs.strategy_store import fresh_strategy, selection_copy
    from curator.selection.prescore import SelectionHandover
    from curator.worker.updater import Updater

    tmp = tempfile.mkdtemp()
    settings = Settings(data_dir=Path(tmp), admin_token=ADMIN, device="cpu",
                        embedded_worker=False)
    migrate(settings)
    app = create_app(settings)
    import httpx

    rng = np.random.default_rng(0)
    async with app.router.lifespan_context(app):
        st = app.state.curator
        h = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://b", headers=h, timeout=300) as c:
            bank_id = (await c.post("/v1/banks", json={"name": "b", "embedder": "provided",
                                                      "dim": args.dim})).json()["bank_id"]
            for start in range(0, args.problems, 2000):
                vecs = rng.standard_normal((2000, args.dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                r = await c.post(f"/v1/banks/{bank_id}/problems", json={"problems": [
                    {"external_id": f"x{start + i}", "prompt": f"p {start + i}",
                     "embedding": vecs[i].round(5).tolist()} for i in range(2000)]})
                r.raise_for_status()
            runs = {}
            for name in ("uniform", "actor_curator"):
                params = ({"dormant_steps": 0} | json.loads(args.actor_params)
                          if name == "actor_curator" else {})
                runs[name] = (await c.post("/v1/runs", json={
                    "bank_id": bank_id, "strategy": name, "params": params,
                    "seed": 1})).json()["run_id"]

        from curator.db.models import Bank, Run

        # as the embedded server's worker: each apply also stages the next pool, scored
        updater = Updater(st.session_factory, st.files, "cpu", handover=SelectionHandover(
            st.snapshots, st.session_factory, st.files, "cpu", copy=selection_copy))
        out = {}
        for name, run_id in runs.items():
            with st.session_factory() as s:
                run, bank = s.get(Run, run_id), s.get(Bank, bank_id)
            apply_s, update_s = [], []
            for i in range(args.tickets + 3):
                with st.session_factory() as sel:
                    res = select_batch(session=sel, session_factory=st.session_factory,
                                       run=run, bank=bank, batch_size=args.batch,
                                       pool_size=2048, files=st.files,
                                       snapshots=st.snapshots)
                record_feedback(session_factory=st.session_factory, run=run,
                                ticket_id=res.ticket_id, requires_rewards=False, results=[
                                    ResultRecord(p.problem_id,
                                                 rewards=rng.integers(0, 2, 8).tolist(),
                                                 log_ratios=(rng.standard_normal(8) * 0.01
                                                             ).tolist())
                                    for p in res.problems])
                # the pure strategy update, timed on a twin of the state the apply starts
                # from and the very observations it reads (re-running it on the updated
                # state would stop at once on the trust region and time almost nothing)
                update_t = None
                if run_id in updater._cache:
                    cached = updater._cache[run_id][1]
                    with st.session_factory() as s:
                        obs, _ = apply.observations(s, st.files, st.session_factory, bank,
                                                    res.ticket_id, None)
                    twin = fresh_strategy(run, bank.dim, "cpu")
                    twin.load_state_dict(cached.state_dict())
                    t1 = time.perf_counter()
                    twin.update(obs)
                    update_t = time.perf_counter() - t1
                t0 = time.perf_counter()
                applied = updater.apply(res.ticket_id)
                dt = time.perf_counter() - t0
                assert not applied.skipped
                if i >= 3:
                    apply_s.append(dt)
                    if update_t is not None:
                        update_s.append(update_t)
            out[name] = {"apply_ms_median": 1e3 * statistics.median(apply_s),
                         "apply_ms_p90": 1e3 * float(np.percentile(apply_s, 90)),
                         "strategy_update_ms_median": 1e3 * statistics.median(update_s)}
            out[name] |= replica_load(st.session_factory, run_id, bank.dim)
    base = out["uniform"]["apply_ms_median"]
    print("\nthe newest checkpoint, and loading it as an API replica would (median of 20): "
          "the selection part alone vs the whole state (the training copy's load)\n")
    print("| strategy | selection part KB | training part KB | load selection ms | "
          "load whole ms |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['selection_kb']:.0f} | {r['training_kb']:.0f} | "
              f"{r['load_selection_ms']:.1f} | {r['load_whole_ms']:.1f} |")
    print(f"\nworker time per applied ticket: batch {args.batch}, dim {args.dim}, "
          f"{args.tickets} tickets, CPU\n")
    print("| strategy | apply median ms | apply p90 ms | strategy.update median ms | "
          "apply / uniform |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['apply_ms_median']:.1f} | {r['apply_ms_p90']:.1f} | "
              f"{r['strategy_update_ms_median']:.1f} | {r['apply_ms_median'] / base:.2f}x |")
    dest = ROOT / "bench" / "results" / "osmd_update.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"args": vars(args), "results": out}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

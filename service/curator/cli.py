"""`curator serve | worker | bank import | bank demo | migrate | sim`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from curator.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def migrate(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings)
    print(f"database at head: {_safe_url(settings.sqlalchemy_url)}")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from curator.app import create_app

    if args.migrate:
        migrate(settings)
    if args.demo:
        _load_demo(settings, quiet=True)
    token, generated = settings.ensure_admin_token()
    settings.admin_token = token
    url = f"http://{args.host}:{args.port}"
    print(f"Curator listening on {url}  (docs: {url}/docs)")
    where = f" (saved in {settings.data_dir / 'admin_token'})" if not generated else ""
    print(f"admin token: {token}{where}")
    print(f"database: {_safe_url(settings.sqlalchemy_url)}; queue: "
          f"{'redis' if settings.redis_url else 'in-process'}", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port,
                log_level=settings.log_level, workers=1)
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from curator.app import build_state
    from curator.worker.loop import run_worker

    if not settings.redis_url:
        print("curator worker needs CURATOR_REDIS_URL (the embedded server runs its own "
              "worker in-process)", file=sys.stderr)
        return 2
    settings.embedded_worker = True

    async def main() -> None:
        state = build_state(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, state.stop.set)
        print(f"worker {getattr(state.queue, 'consumer', '')} consuming "
              f"{settings.feedback_stream}", flush=True)
        try:
            await run_worker(state.queue, state.updater, state.stop,
                             session_factory=state.session_factory)
        finally:
            await state.queue.close()
            state.engine.dispose()

    asyncio.run(main())
    return 0


def _open_bank(settings: Settings, name: str, embedder: str, dim: int | None, create: bool):
    from sqlalchemy import select

    from curator.bank.ingest import create_bank
    from curator.db.models import Bank
    from curator.db.session import make_engine, make_session_factory

    sf = make_session_factory(make_engine(settings.sqlalchemy_url))
    with sf() as s:
        bank = s.scalar(select(Bank).where(Bank.name == name))
        if bank is None:
            if not create:
                raise SystemExit(f"bank {name!r} does not exist (pass --create)")
            bank = create_bank(session=s, name=name, embedder=embedder, dim=dim,
                               default_hash_dim=settings.hash_embedder_dim)
            s.commit()
    return sf, bank


def import_rows(settings: Settings, sf, bank, batches, total: int | None, fields,
                *, quiet: bool = False, desc: str = "import") -> tuple[int, int]:
    """Ingest batches of row dicts with a progress bar; returns (added, duplicates)."""
    from tqdm import tqdm

    from curator.bank.embed import make_embedder
    from curator.bank.files import BankFiles
    from curator.bank.importer import records
    from curator.bank.ingest import add_problems, payload_fetcher, row_fetcher
    from curator.curation.scorer import resolve_device

    device = str(resolve_device(settings.device))
    files = BankFiles(settings.data_dir)
    store = files.store(bank.id, bank.dim)
    payloads = files.payloads(bank.id)
    embedder = None if bank.embedder == "provided" else make_embedder(
        bank.embedder, bank.dim, device=device)
    added = dups = offset = 0
    with sf() as s, tqdm(total=total, desc=desc, unit="problem", disable=quiet) as bar:
        bank = s.merge(bank)
        for rows in batches:
            result = add_problems(session=s, bank=bank, problems=records(rows, fields, offset),
                                  embedder=embedder, device=device)
            if result.added:
                store.append(result.first_position, result.vectors, row_fetcher(sf, bank.id))
                payloads.append(result.first_position, result.payloads,
                                payload_fetcher(sf, bank.id))
            added += result.added
            dups += len(result.duplicates)
            offset += len(rows)
            bar.update(len(rows))
            bar.set_postfix(added=added, duplicates=dups)
        size = bank.size
    store.sync(size, row_fetcher(sf, bank.id))
    payloads.sync(size, payload_fetcher(sf, bank.id))
    files.index(bank.id).build(store)
    return added, dups


def _load_demo(settings: Settings, *, quiet: bool = False, n: int = 4000) -> None:
    from curator.bank.demo import demo_problems
    from curator.bank.importer import FieldMap

    sf, bank = _open_bank(settings, "demo", "hash", None, create=True)
    if bank.size >= n:
        if not quiet:
            print(f"demo bank already loaded ({bank.size} problems, bank_id {bank.id})")
        return
    rows = list(demo_problems(n))
    batches = (rows[i:i + 1000] for i in range(0, n, 1000))
    added, _ = import_rows(settings, sf, bank, batches, n,
                           FieldMap(external_id="external_id", embedding=None), quiet=quiet,
                           desc="demo bank")
    print(f"demo bank: {added} problems added (bank_id {bank.id})")


def _cmd_bank_demo(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings)
    _load_demo(settings, n=args.n)
    return 0


def _cmd_bank_import(args: argparse.Namespace, settings: Settings) -> int:
    from curator.bank.importer import FieldMap, count_rows, read_rows

    path = Path(args.file)
    if not path.exists():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    sf, bank = _open_bank(settings, args.bank, args.embedder, args.dim, args.create)
    fields = FieldMap(external_id=args.id_field, prompt=args.prompt_field,
                      answer=args.answer_field or None, embedding=args.embedding_field or None,
                      metadata=args.metadata_fields.split(",") if args.metadata_fields else None)
    total = None if path.is_dir() else count_rows(path)
    rows = read_rows(path, args.batch_size, embedding_field=fields.embedding)
    added, dups = import_rows(settings, sf, bank, rows, total,
                              fields, desc=f"import {path.name}")
    print(f"bank {args.bank!r} (id {bank.id}): {added} added, {dups} duplicates skipped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the API (embedded worker unless Redis is set)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--migrate", action="store_true", help="run migrations first")
    serve.add_argument("--demo", action="store_true", help="load the demo bank first")
    serve.set_defaults(fn=_cmd_serve)

    worker = sub.add_parser("worker", help="run a feedback worker (needs CURATOR_REDIS_URL)")
    worker.set_defaults(fn=_cmd_worker)

    mig = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    mig.set_defaults(fn=_cmd_migrate)

    bank = sub.add_parser("bank", help="bank tools").add_subparsers(dest="bank_cmd",
                                                                   required=True)
    imp = bank.add_parser("import", help="import JSONL, Parquet or a datasets directory")
    imp.add_argument("file")
    imp.add_argument("--bank", required=True, help="bank name")
    imp.add_argument("--create", action="store_true", help="create the bank if missing")
    imp.add_argument("--embedder", default="hash", choices=["hash", "minilm", "provided"])
    imp.add_argument("--dim", type=int, default=None)
    imp.add_argument("--id-field", default="id")
    imp.add_argument("--prompt-field", default="prompt")
    imp.add_argument("--answer-field", default="answer")
    imp.add_argument("--embedding-field", default="embedding")
    imp.add_argument("--metadata-fields", default=None,
                     help="comma-separated columns kept as metadata (default: all others)")
    imp.add_argument("--batch-size", type=int, default=5000)
    imp.set_defaults(fn=_cmd_bank_import)
    demo = bank.add_parser("demo", help="load the generated demo bank")
    demo.add_argument("-n", type=int, default=4000)
    demo.set_defaults(fn=_cmd_bank_demo)

    try:
        from curator.sim.cli import add_sim_parser
    except ImportError:
        pass
    else:
        add_sim_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args, settings) or 0


if __name__ == "__main__":
    sys.exit(main())

"""`curator serve | worker | bank import | bank demo | migrate | sim`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from sqlalchemy.exc import OperationalError

from curator.core.config import Settings
from curator.core.errors import CuratorError
from curator.db.migrate import alembic_config, upgrade


def migrate(settings: Settings) -> None:
    """`curator migrate`: the data directory (SQLite lives there) and the newest schema."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)


def schema_problem(settings: Settings, *, unreachable_ok: bool = False) -> str | None:
    """None when the database is at the newest schema; else one line saying what to run.

    `unreachable_ok`: a database that cannot be reached now is not reported (a server may
    start before its PostgreSQL and report it in /readyz)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before the import: it logs
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(settings.sqlalchemy_url)
    where = _safe_url(settings.sqlalchemy_url)
    if (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not Path(url.database).exists()):
        return f"no database at {where} yet: run `curator migrate` first"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        if unreachable_ok:
            return None
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"cannot open the database at {where}: {reason}"
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(settings.sqlalchemy_url))
    heads = set(script.get_heads())
    if not current:
        return f"the database at {where} has no Curator tables yet: run `curator migrate` first"
    if current != heads:
        known = {rev.revision for rev in script.walk_revisions()}
        if not current <= known:
            return (f"the database at {where} is at schema {', '.join(sorted(current))}, "
                    f"newer than this curator knows: upgrade curator")
        return (f"the database at {where} is at schema {', '.join(sorted(current))}, this "
                f"curator needs {', '.join(sorted(heads))}: run `curator migrate` first")
    return None


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
    elif problem := schema_problem(settings, unreachable_ok=True):
        print(f"curator serve: {problem} (or pass --migrate)", file=sys.stderr)
        return 2
    if args.demo:
        _load_demo(settings, quiet=True)
    from_env = bool(settings.admin_token)
    token, generated = settings.ensure_admin_token()
    settings.admin_token = token
    url = f"http://{args.host}:{args.port}"
    print(f"Curator listening on {url}  (docs: {url}/docs)")
    if from_env:  # the operator set it: no file is involved, and it is not echoed
        print("admin token: from CURATOR_ADMIN_TOKEN")
    else:
        kept = "generated, saved in" if generated else "saved in"
        print(f"admin token: {token} ({kept} {settings.data_dir / 'admin_token'})")
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
                             session_factory=state.session_factory,
                             ticket_ttl_s=settings.ticket_ttl_s, versions=state.versions)
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
        if bank is not None and embedder is not None and embedder != bank.embedder:
            raise SystemExit(f"bank {name!r} embeds with {bank.embedder!r}, not {embedder!r}: "
                             "drop --embedder, or import into a new bank")
        if bank is None:
            if not create:
                raise SystemExit(f"bank {name!r} does not exist (pass --create)")
            bank = create_bank(session=s, name=name, embedder=embedder or "hash", dim=dim,
                               default_hash_dim=settings.hash_embedder_dim)
            s.commit()
    return sf, bank


def import_rows(settings: Settings, sf, bank, batches, total: int | None, fields,
                *, quiet: bool = False, desc: str = "import") -> tuple[int, int]:
    """Ingest batches of row dicts with a progress bar; returns (added, duplicates)."""
    from tqdm import tqdm

    from curator.bank.access import payload_fetcher, row_fetcher
    from curator.bank.embed import make_embedder
    from curator.bank.files import BankFiles
    from curator.bank.importer import records
    from curator.bank.ingest import ingest
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
            result = ingest(session=s, session_factory=sf, files=files, bank=bank,
                            problems=records(rows, fields, offset), embedder=embedder,
                            device=device)
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
    if args.n < 1:
        print(f"curator bank demo: -n must be ≥ 1 (got {args.n})", file=sys.stderr)
        return 2
    migrate(settings)
    _load_demo(settings, n=args.n)
    return 0


def _cmd_bank_import(args: argparse.Namespace, settings: Settings) -> int:
    from curator.bank.importer import FieldMap, RowError, count_rows, lookup, read_rows

    path = Path(args.file)
    if not path.exists():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    if problem := schema_problem(settings):
        print(f"curator bank import: {problem}", file=sys.stderr)
        return 2
    id_field = args.id_field
    if id_field is None:  # "id" where the file has it, else each row's position (row-N)
        first = next(iter(read_rows(path, 1, embedding_field=None)), [])
        id_field = "id" if first and lookup(first[0], "id") is not None else None
    fields = FieldMap(external_id=id_field, prompt=args.prompt_field,
                      answer=args.answer_field or None, embedding=args.embedding_field or None,
                      metadata=args.metadata_fields.split(",") if args.metadata_fields else None)
    # every row checked before anything is written (a failed --create leaves no bank)
    seen: dict[str, int] = {}
    offset = 0
    for batch in read_rows(path, args.batch_size, embedding_field=fields.embedding):
        for i, row in enumerate(batch):
            try:
                ext = fields.record(row, offset + i).external_id
            except RowError as exc:
                print(f"curator bank import: {exc.message}; nothing was imported",
                      file=sys.stderr)
                return 2
            if ext in seen:
                print(f"curator bank import: rows {seen[ext] + 1} and {offset + i + 1} share "
                      f"the id {ext!r} (field {id_field!r}); nothing was imported",
                      file=sys.stderr)
                return 2
            seen[ext] = offset + i
        offset += len(batch)
    sf, bank = _open_bank(settings, args.bank, args.embedder, args.dim, args.create)
    total = None if path.is_dir() else count_rows(path)
    rows = read_rows(path, args.batch_size, embedding_field=fields.embedding)
    added, dups = import_rows(settings, sf, bank, rows, total,
                              fields, desc=f"import {path.name}")
    print(f"bank {args.bank!r} (id {bank.id}): {added} added, {dups} duplicates skipped")
    return 0


# One line per setting in config.Settings, shown by `curator --help` (a test keeps this
# list and Settings in step).
ENV_HELP = {
    "mode": "dev | production (production will not start without an admin token)",
    "data_dir": "SQLite file, dev admin token, embedding stores, FAISS indexes",
    "database_url": "e.g. postgresql+psycopg://user@host/db (unset: SQLite in the data dir)",
    "redis_url": "e.g. redis://host:6379/0: queue for `curator worker`s (unset: in-process)",
    "admin_token": "admin bearer token (dev: generated once into DATA_DIR/admin_token)",
    "device": "auto (CUDA when present) | cpu | cuda | cuda:N",
    "torch_threads": "torch intra-op threads on CPU (0: torch's default)",
    "embedded_worker": "run the feedback worker inside the API process",
    "max_body_bytes": "larger request bodies are refused with 413",
    "max_batch_size": "largest batch_size a select may ask for",
    "max_pool_size": "largest candidate pool a select may ask for",
    "max_problems_per_request": "most problems one POST /v1/banks/{bank}/problems may add",
    "default_pool_size": "candidate pool when a select names none (at least batch_size)",
    "ticket_ttl_s": "feedback for an older ticket is refused with 410 (0: never)",
    "max_apply_attempts": "apply errors before a ticket is set aside as failed",
    "worker_stale_s": "a worker heartbeat older than this counts as dead (/readyz, /metrics)",
    "hash_embedder_dim": "dimension of a new `hash` bank when none is given",
    "feedback_stream": "Redis stream that carries feedback to the workers",
    "worker_group": "Redis consumer group of the workers",
    "log_level": "debug | info | warning | error",
    "extra_admin_tokens": 'JSON list of further admin tokens, e.g. \'["old"]\' (rotation)',
}


def _env_epilog() -> str:
    lines = ["environment (read by every command; empty counts as unset):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f" (default: {default})"
        lines.append(f"  {'CURATOR_' + name.upper():<32} {ENV_HELP.get(name, '')}{shown}")
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("curator-service")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


def _cmd_run_export(args: argparse.Namespace, settings: Settings) -> int:
    from curator.core.errors import Missing
    from curator.db.session import make_engine, make_session_factory
    from curator.runs.export import write_parquet

    if problem := schema_problem(settings):
        print(f"curator run export: {problem}", file=sys.stderr)
        return 2
    sf = make_session_factory(make_engine(settings.sqlalchemy_url))
    try:
        rows = write_parquet(sf, args.run, args.output, problems=args.problems)
    except Missing as exc:
        print(f"curator run export: {exc}", file=sys.stderr)
        return 2
    print(f"run {args.run}: {rows} rows written to {args.output}")
    return 0


VERBOSE_HELP = "more log output: -v info, -vv debug (serve and worker: CURATOR_LOG_LEVEL)"


def _log_level(args: argparse.Namespace, settings: Settings) -> int:
    """The server and the worker log at CURATOR_LOG_LEVEL (info by default: operators read
    those logs); a one-shot command says only what went wrong unless asked (-v, -vv)."""
    verbose = getattr(args, "verbose", 0) or 0
    if getattr(args, "command", None) in ("serve", "worker") and not verbose:
        return logging.getLevelName(settings.log_level.upper())
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    see_env = "Settings come from CURATOR_* environment variables: see `curator --help`."
    p = argparse.ArgumentParser(prog="curator", description=__doc__, epilog=_env_epilog(),
                                formatter_class=raw)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def command(parent, name: str, help: str, **kw) -> argparse.ArgumentParser:
        cmd = parent.add_parser(name, help=help, description=help, epilog=see_env, **kw)
        # SUPPRESS: a subcommand's own default must not reset a `curator -v …` given first
        cmd.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help=VERBOSE_HELP)
        return cmd

    serve = command(sub, "serve", "start the API (embedded worker unless Redis is set)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; 0.0.0.0 for every interface "
                            "(default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000,
                       help="TCP port (default: %(default)s)")
    serve.add_argument("--migrate", action="store_true",
                       help="upgrade the database schema first (as `curator migrate`)")
    serve.add_argument("--demo", action="store_true",
                       help="load the 4,000-problem demo bank first (as `curator bank demo`)")
    serve.set_defaults(fn=_cmd_serve)

    worker = command(sub, "worker", "run a feedback worker (needs CURATOR_REDIS_URL)")
    worker.set_defaults(fn=_cmd_worker)

    mig = command(sub, "migrate", "create or upgrade the database to the newest schema")
    mig.set_defaults(fn=_cmd_migrate)

    bank = command(sub, "bank", "bank tools: import problems, load the demo bank")
    banks = bank.add_subparsers(dest="bank_cmd", required=True)
    imp = command(banks, "import", "import JSONL, Parquet or a Hugging Face datasets directory")
    imp.add_argument("file", help="a .jsonl/.json file, a .parquet file, or a directory "
                                  "written by datasets' save_to_disk")
    imp.add_argument("--bank", required=True, help="bank name")
    imp.add_argument("--create", action="store_true", help="create the bank if missing")
    imp.add_argument("--embedder", default=None, choices=["hash", "minilm", "provided"],
                     help="for a new bank: hash (no model), minilm (extra `embed`, dim 384) "
                          "or provided (vectors in --embedding-field); an existing bank "
                          "with another one is refused (default: hash)")
    imp.add_argument("--dim", type=int, default=None,
                     help="embedding dimension of a new bank (default: "
                          "CURATOR_HASH_EMBEDDER_DIM for hash, 384 for minilm; "
                          "required for provided)")
    imp.add_argument("--id-field", default=None,
                     help="column with each problem's external id, dotted for nested "
                          "columns; a row without it is an error (default: \"id\" if the "
                          "file has it, else each row's position, row-N)")
    imp.add_argument("--prompt-field", default="prompt",
                     help="column with the prompt (default: %(default)s)")
    imp.add_argument("--answer-field", default="answer",
                     help="column with the reference answer; '' for none "
                          "(default: %(default)s)")
    imp.add_argument("--embedding-field", default="embedding",
                     help="column with provided vectors; '' for none (default: %(default)s)")
    imp.add_argument("--metadata-fields", default=None,
                     help="comma-separated columns kept as metadata (default: all others)")
    imp.add_argument("--batch-size", type=int, default=5000,
                     help="rows read and embedded at a time (default: %(default)s)")
    imp.set_defaults(fn=_cmd_bank_import)
    demo = command(banks, "demo", "load the generated demo bank (migrates the database first)")
    demo.add_argument("-n", type=int, default=4000,
                      help="problems in the demo bank (default: %(default)s)")
    demo.set_defaults(fn=_cmd_bank_demo)

    run = command(sub, "run", "run tools: export a run's record")
    runs = run.add_subparsers(dest="run_cmd", required=True)
    exp = command(runs, "export", "write a run's tickets, items and feedback as Parquet")
    exp.add_argument("run", type=int, help="run id")
    exp.add_argument("-o", "--output", required=True, help="the .parquet file to write")
    exp.add_argument("--problems", action="store_true",
                     help="add each row's prompt, answer and metadata (JSON) columns")
    exp.set_defaults(fn=_cmd_run_export)

    try:
        from curator.sim.cli import add_sim_parser
    except ImportError:
        pass
    else:
        add_sim_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:  # pydantic's ValidationError: a CURATOR_* variable is wrong
        if os.environ.get("CURATOR_DEBUG"):
            raise
        print(f"curator {' '.join(_command_words(args))}: {_settings_problem(exc)}",
              file=sys.stderr)
        return 2
    level = _log_level(args, settings)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss reports at INFO that it tried, and could not load, its AVX-512 build before
    # loading the AVX2 one: a ModuleNotFoundError in the log that is not an error
    logging.getLogger("faiss.loader").setLevel(max(level, logging.WARNING))
    if not getattr(args, "verbose", 0):  # alembic's plugin set-up lines, at every start
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.fn(args, settings) or 0
    except (CuratorError, OSError, OperationalError) as exc:
        # a user's mistake (a refused input, a path that is not there, a database that
        # cannot be reached): one line, no traceback; CURATOR_DEBUG=1 shows it
        if os.environ.get("CURATOR_DEBUG"):
            raise
        if isinstance(exc, OperationalError):
            first = str(exc.orig or exc).strip().splitlines()[0]
            what = (f"cannot use the database at {_safe_url(settings.sqlalchemy_url)}: "
                    f"{first} (check CURATOR_DATABASE_URL)")
        else:
            what = getattr(exc, "message", None) or (
                f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename
                else str(exc))
        print(f"curator {' '.join(_command_words(args))}: {what}", file=sys.stderr)
        return 2


def _settings_problem(exc: ValueError) -> str:
    """A CURATOR_* setting pydantic refused, as one line naming the variable."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    parts = []
    for err in errors():
        field = ".".join(str(x) for x in err.get("loc", ()))
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        name = f"CURATOR_{field.upper()}" if field else "settings"
        got = err.get("input")
        shown = f" (got {got!r})" if field and isinstance(got, str | int | float) else ""
        parts.append(f"{name}: {message}{shown}" if field else message)
    return "; ".join(parts)


def _command_words(args: argparse.Namespace) -> list[str]:
    return [str(w) for w in (getattr(args, "command", None), getattr(args, "bank_cmd", None),
                             getattr(args, "run_cmd", None)) if w]


if __name__ == "__main__":
    sys.exit(main())

"""A run's record as Parquet: one row per selected problem, with its ticket and feedback.

What analysis in pandas, polars or DuckDB needs to reweight or replay a run offline:
which problem was drawn at which step, by which model version, from which source, with
which logit and propensity, and what the trainer reported for it. Rows are read with a
server-side cursor and written a row group at a time, so a long run streams in bounded
memory (`parquet_chunks`) rather than being loaded whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from curator.core.errors import Missing
from curator.db.models import Feedback, Problem, Run, Ticket, TicketItem

SCHEMA = pa.schema([
    ("run_id", pa.int64()), ("step", pa.int64()), ("ticket_id", pa.string()),
    ("model_version", pa.int64()), ("ticket_state", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")), ("reported_at", pa.timestamp("us", tz="UTC")),
    ("applied_at", pa.timestamp("us", tz="UTC")), ("pool_size", pa.int64()),
    ("pool_entropy", pa.float64()), ("rank", pa.int64()), ("problem_id", pa.int64()),
    ("external_id", pa.string()), ("source", pa.string()), ("logit", pa.float64()),
    ("propensity", pa.float64()), ("utility", pa.float64()), ("utility_kind", pa.string()),
    ("mean_reward", pa.float64()), ("mean_abs_advantage", pa.float64()),
    ("rewards", pa.list_(pa.float64())), ("log_ratios", pa.list_(pa.float64())),
])
# `problems=True`: what each problem was, so the export joins nothing to be read
PROBLEM_FIELDS = [("prompt", pa.string()), ("answer", pa.string()),
                  ("metadata", pa.string())]  # metadata as a JSON object's text
SCHEMA_WITH_PROBLEMS = pa.schema(list(SCHEMA) + [pa.field(n, t) for n, t in PROBLEM_FIELDS])
CHUNK_ROWS = 50_000


def schema(problems: bool = False) -> pa.Schema:
    return SCHEMA_WITH_PROBLEMS if problems else SCHEMA


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC datetimes; Parquet's column is UTC either way."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def record_batches(session_factory: sessionmaker[Session], run_id: int,
                   chunk: int = CHUNK_ROWS, *,
                   problems: bool = False) -> Iterator[pa.RecordBatch]:
    """The run's rows in step and rank order, `chunk` rows per batch (Missing if no run);
    with `problems`, each row's prompt, answer and metadata (JSON text) too."""
    with session_factory() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise Missing(f"run {run_id} not found", {"run_id": run_id})
        query = (
            select(Ticket.step, Ticket.id, Ticket.model_version, Ticket.state,
                   Ticket.created_at, Ticket.reported_at, Ticket.applied_at, Ticket.pool_size,
                   Ticket.pool_entropy, TicketItem.rank, TicketItem.problem_id,
                   Problem.external_id, TicketItem.source, TicketItem.logit,
                   TicketItem.propensity, Feedback.utility, Feedback.utility_kind,
                   Feedback.mean_reward, Feedback.mean_abs_advantage, Feedback.rewards,
                   Feedback.log_ratios,
                   *((Problem.prompt, Problem.answer, Problem.meta) if problems else ()))
            .join(TicketItem, TicketItem.ticket_id == Ticket.id)
            .join(Problem, and_(Problem.bank_id == run.bank_id,
                                Problem.position == TicketItem.problem_id))
            .outerjoin(Feedback, and_(Feedback.ticket_id == TicketItem.ticket_id,
                                      Feedback.problem_id == TicketItem.problem_id))
            .where(Ticket.run_id == run_id)
            .order_by(Ticket.step, TicketItem.rank)
            .execution_options(yield_per=chunk))
        for rows in s.execute(query).partitions(chunk):
            cols = list(zip(*rows))
            data = {
                "run_id": [run_id] * len(rows), "step": cols[0], "ticket_id": cols[1],
                "model_version": cols[2], "ticket_state": cols[3],
                "created_at": [_utc(v) for v in cols[4]],
                "reported_at": [_utc(v) for v in cols[5]],
                "applied_at": [_utc(v) for v in cols[6]],
            }
            names = ["pool_size", "pool_entropy", "rank", "problem_id", "external_id",
                     "source", "logit", "propensity", "utility", "utility_kind",
                     "mean_reward", "mean_abs_advantage", "rewards", "log_ratios"]
            data.update({name: cols[7 + k] for k, name in enumerate(names)})
            if problems:
                data["prompt"], data["answer"] = cols[21], cols[22]
                data["metadata"] = [json.dumps(m or {}, ensure_ascii=False) for m in cols[23]]
            yield pa.RecordBatch.from_pydict(data, schema=schema(problems))


class _Sink:
    """A write-only file for ParquetWriter whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False
        self._pos = 0

    def write(self, data) -> int:
        b = bytes(data)
        self.parts.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def parquet_chunks(batches: Iterable[pa.RecordBatch],
                   schema_: pa.Schema = SCHEMA) -> Iterator[bytes]:
    """A Parquet file's bytes, one row group per batch as it is written (an empty run is
    a valid file with no rows)."""
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema_, compression="zstd")
    try:
        for batch in batches:
            writer.write_batch(batch)
            if chunk := sink.take():
                yield chunk
    finally:
        writer.close()
    yield sink.take()


def write_parquet(session_factory: sessionmaker[Session], run_id: int, path, *,
                  problems: bool = False) -> int:
    """Write the run's export to `path`; the number of rows."""
    rows = 0
    with pq.ParquetWriter(str(path), schema(problems), compression="zstd") as writer:
        for batch in record_batches(session_factory, run_id, problems=problems):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows

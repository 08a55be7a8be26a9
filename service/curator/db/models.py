"""ORM models. The database is the record; files in the data dir are derived caches."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from curator.core.tickets import TicketState


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    embedder: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int] = mapped_column(Integer)
    # Number of problems; also the next free position (positions are dense, 0..size-1).
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Problem(Base):
    """A problem, addressed by its dense position in the bank (the API's problem_id)."""

    __tablename__ = "problems"
    __table_args__ = (UniqueConstraint("bank_id", "external_id", name="uq_problem_external"),)

    bank_id: Mapped[int] = mapped_column(
        ForeignKey("banks.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    external_id: Mapped[str] = mapped_column(String(512))
    prompt: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, bank.dim values


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(BigInteger)
    token_hash: Mapped[str] = mapped_column(String(64))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # One atomic counter over the proposal's epochs (see curation/proposal.py).
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_run_state", "run_id", "state"),
                      Index("ix_tickets_run_step", "run_id", "step"),
                      Index("ux_tickets_run_idempotency_key", "run_id", "idempotency_key",
                            unique=True))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[int] = mapped_column(Integer)
    pool_size: Mapped[int] = mapped_column(Integer)
    pool_entropy: Mapped[float | None] = mapped_column(Float, nullable=True)
    # issued → reported → applied; `failed` after max attempts to apply (a dead letter)
    state: Mapped[str] = mapped_column(String(16), default=TicketState.ISSUED)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the client's Idempotency-Key of the select that issued it: a retry gets this ticket
    idempotency_key: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TicketItem(Base):
    __tablename__ = "ticket_items"

    ticket_id: Mapped[str] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    problem_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    rank: Mapped[int] = mapped_column(Integer)
    logit: Mapped[float] = mapped_column(Float)
    propensity: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))


class Feedback(Base):
    __tablename__ = "feedback"

    ticket_id: Mapped[str] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    problem_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    utility: Mapped[float | None] = mapped_column(Float, nullable=True)
    utility_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rewards: Mapped[list | None] = mapped_column(JSON, nullable=True)
    log_ratios: Mapped[list | None] = mapped_column(JSON, nullable=True)
    mean_reward: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_abs_advantage: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # What selection reads (strategy_store.py); NULL in checkpoints written before 0005,
    # whose `blob` holds the whole state.
    selection: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    blob: Mapped[bytes] = mapped_column(LargeBinary)  # the rest: what only training reads
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HistoryPoint(Base):
    """One row per applied ticket: the per-step series behind the admin views."""

    __tablename__ = "history"
    __table_args__ = (Index("ix_history_run_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ticket_id: Mapped[str] = mapped_column(String(32), unique=True)
    step: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_utility: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_reward: Mapped[float | None] = mapped_column(Float, nullable=True)
    entropy: Mapped[float | None] = mapped_column(Float, nullable=True)
    curator_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The ticket's selected items counted by metadata value (curator/runs/selected_by.py);
    # NULL for points recorded before migration 0003. Deferred: only history(by=...) reads it.
    selected_by: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True,
                                                     deferred=True)


class WorkerBeat(Base):
    """A worker process's heartbeat (worker/loop.py), read by /readyz and /metrics."""

    __tablename__ = "worker_beats"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    applied: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RunMetric(Base):
    """A number the trainer reported for a step of its run (`POST /v1/runs/{run}/metrics`):
    eval accuracy, pass@k, … — what the dashboard's comparison plots beside reward."""

    __tablename__ = "run_metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

"""Thin Python client for the Curator curriculum-as-a-service HTTP API.

    from curator_client import Client

    with Client("http://127.0.0.1:8000", token=ADMIN_TOKEN) as c:
        bank = c.create_bank("arith", embedder="hash")
        c.add_problems(bank.bank_id, [{"external_id": "p1", "prompt": "1+1", "answer": "2"}])
        run = c.create_run(bank.bank_id, strategy="actor_curator", seed=0)
        for batch in run.batches(batch_size=256, steps=100):
            batch.report([{"problem_id": p.problem_id, "rewards": rollouts(p)} for p in batch])

`AsyncClient` offers the same API with `async` methods.
"""

from ._client import AsyncClient, Client
from ._errors import (
    APIError,
    BadRequest,
    Conflict,
    CuratorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    error_from_response,
)
from ._models import (
    AddProblemsResult,
    Bank,
    CreatedRun,
    FeedbackReceipt,
    Health,
    Problem,
    Result,
    RunInfo,
    Ticket,
    TicketCounts,
)
from ._runs import AsyncBatch, AsyncRun, Batch, Run
from ._version import __version__
from .config import CuratorConfig

__all__ = [
    "APIError",
    "AddProblemsResult",
    "AsyncBatch",
    "AsyncClient",
    "AsyncRun",
    "BadRequest",
    "Bank",
    "Batch",
    "Client",
    "Conflict",
    "CreatedRun",
    "CuratorConfig",
    "CuratorError",
    "FeedbackReceipt",
    "Forbidden",
    "Health",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "Result",
    "Run",
    "RunInfo",
    "ServerError",
    "Ticket",
    "TicketCounts",
    "TransportError",
    "Unauthorized",
    "__version__",
    "error_from_response",
]

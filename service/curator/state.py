"""Everything the app builds at start-up, kept on `app.state.curator` (no import-time state)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from curator.bank.files import BankFiles
from curator.core.config import Settings
from curator.core.metrics import Metrics
from curator.core.versions import VersionChannel
from curator.selection.snapshots import SnapshotCache
from curator.worker.queue import FeedbackQueue
from curator.worker.updater import Updater


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    files: BankFiles
    snapshots: SnapshotCache
    queue: FeedbackQueue
    versions: VersionChannel | None  # separate workers' announcements (Redis); None: one process
    updater: Updater | None
    device: str
    admin_tokens: list[str]
    worker_task: asyncio.Task | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: Metrics = field(default_factory=Metrics)

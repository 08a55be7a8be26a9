"""Service settings, read from the environment (prefix `CURATOR_`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURATOR_", env_ignore_empty=True, extra="ignore")

    mode: Literal["dev", "production"] = "dev"
    data_dir: Path = Path("data")
    database_url: str | None = None  # default: SQLite file in data_dir
    redis_url: str | None = None  # unset = in-process queue and worker
    admin_token: str | None = None  # dev: generated and printed when unset
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Intra-op threads for CPU scoring/updates. 1 by default: the scorer is small, and a
    # server's request threads plus torch's own pool oversubscribe small machines (a
    # 2048-candidate pool scored 4-5x slower with 2 threads than 1 on the 2-core box).
    # 0 keeps torch's default.
    torch_threads: int = 1
    embedded_worker: bool = True  # run the worker inside the API process
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_size: int = 8192
    max_pool_size: int = 65536
    max_problems_per_request: int = 20_000
    default_pool_size: int = 2048
    # Feedback for a ticket older than this is refused with 410 (0 = tickets never expire:
    # stored logits and propensities keep old tickets valid for the OSMD update).
    ticket_ttl_s: float = 0.0
    # A ticket whose apply raises this many times is set aside as `failed` (its error is
    # kept on the ticket) so the run's later tickets are not stalled behind it.
    max_apply_attempts: int = 5
    # A worker whose heartbeat (worker/beats.py, every 2 s) is older than this is taken
    # for dead by /readyz ("degraded") and /metrics (curator_workers_alive).
    worker_stale_s: float = 15.0
    hash_embedder_dim: int = 256
    feedback_stream: str = "curator:feedback"
    worker_group: str = "curator-workers"
    log_level: str = "info"
    extra_admin_tokens: list[str] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _normalise_db_url(cls, v: str | None) -> str | None:
        # Accept the URLs operators paste from Heroku-style envs.
        if v and v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgres://")
        if v and v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @model_validator(mode="after")
    def _require_admin_token_in_production(self) -> Settings:
        if self.mode == "production" and not self.admin_token:
            raise ValueError("CURATOR_ADMIN_TOKEN must be set in production mode")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'curator.db').resolve()}"

    def ensure_admin_token(self) -> tuple[str, bool]:
        """Return the admin token, generating one for dev mode; bool says it was generated."""
        if self.admin_token:
            return self.admin_token, False
        token_file = self.data_dir / "admin_token"
        if token_file.exists():
            self.admin_token = token_file.read_text().strip()
            return self.admin_token, False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = "adm_" + secrets.token_urlsafe(24)
        token_file.write_text(self.admin_token + "\n")
        token_file.chmod(0o600)
        return self.admin_token, True

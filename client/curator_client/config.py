"""`CuratorConfig`: the Curator settings of a training job as data, the trainer's way.

A dataclass of plain fields (all prefixed `curator_`, so it parses beside `GRPOConfig`):
TRL's `TrlParser((GRPOConfig, CuratorConfig))` reads it from the command line or from
the same YAML file as the trainer's arguments, and `CuratorGRPOTrainer(...,
curator_config=config)` takes it instead of a ready run.

    # grpo.yaml
    learning_rate: 1.0e-6
    num_generations: 8
    curator_url: http://curator:8000
    curator_token_file: /run/secrets/curator_admin
    curator_bank: math-train
    curator_strategy: actor_curator
    curator_params: {"explore": 0.05}

    training_args, curator = TrlParser((GRPOConfig, CuratorConfig)).parse_args_and_config()

Either `curator_run_id` (attach to an existing run; the token is that run's own) or
`curator_bank` (a bank name or id: a new run is created on it; the token is the admin's).
`public()` is the config without secrets, for a tracker's run config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ._client import Client
from ._runs import Run

__all__ = ["CuratorConfig"]


@dataclass
class CuratorConfig:
    curator_url: str = field(default="http://127.0.0.1:8000",
                             metadata={"help": "base URL of the Curator service"})
    curator_token: Optional[str] = field(  # noqa: UP045 - HfArgumentParser reads Optional
        default=None, repr=False,
        metadata={"help": "bearer token (admin to create a run, or the run's own); "
                          "prefer curator_token_file"})
    curator_token_file: Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "file holding the token (e.g. a mounted secret)"})
    curator_run_id: Optional[int] = field(  # noqa: UP045
        default=None, metadata={"help": "attach to this existing run"})
    curator_bank: Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "bank name or id to create a new run on"})
    curator_strategy: str = field(default="actor_curator",
                                  metadata={"help": "strategy of a new run"})
    curator_params: Optional[Union[dict, str]] = field(  # noqa: UP007, UP045
        default=None, metadata={"help": "strategy parameters of a new run (a JSON object)"})
    curator_seed: Optional[int] = field(default=None, metadata={"help": "seed of a new run"})  # noqa: UP045
    curator_run_name: Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "name of a new run"})
    curator_pool_size: Optional[int] = field(  # noqa: UP045
        default=None, metadata={"help": "candidates scored per select (server default)"})
    curator_log_ratios: bool = field(
        default=True, metadata={"help": "send per-rollout log-ratios with the rewards"})
    curator_metrics_window: int = field(
        default=50, metadata={"help": "tickets the logged curator/* control stats cover; "
                                      "0: log only what the trainer saw (no requests)"})

    def __post_init__(self) -> None:
        if isinstance(self.curator_params, str):
            try:
                self.curator_params = json.loads(self.curator_params or "{}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"curator_params must be a JSON object: {exc}") from exc
        if self.curator_params is not None and not isinstance(self.curator_params, dict):
            raise ValueError("curator_params must be a JSON object")
        if (self.curator_run_id is None) == (self.curator_bank is None):
            raise ValueError("CuratorConfig needs exactly one of curator_run_id (attach to "
                             "a run) or curator_bank (create a run on that bank)")
        if self.curator_token and self.curator_token_file:
            raise ValueError("give curator_token or curator_token_file, not both")
        if self.curator_metrics_window < 0:
            raise ValueError("curator_metrics_window must be ≥ 0")

    def token(self) -> str | None:
        if self.curator_token_file:
            path = Path(self.curator_token_file).expanduser()
            try:
                return path.read_text().strip() or None
            except OSError as exc:
                raise ValueError(f"curator_token_file {str(path)!r}: {exc.strerror}") from exc
        return self.curator_token

    def public(self) -> dict[str, Any]:
        """The settings without the token (safe for a tracker's run config)."""
        out = asdict(self)
        out.pop("curator_token")
        return out

    def open_run(self, client: Client | None = None) -> Run:
        """The run this config names: attached by id, or created on the bank."""
        client = client or Client(self.curator_url, token=self.token())
        if self.curator_run_id is not None:
            return client.run(self.curator_run_id, token=self.token())
        bank = self._bank_id(client)
        return client.create_run(bank, strategy=self.curator_strategy,
                                 params=dict(self.curator_params or {}),
                                 seed=self.curator_seed, name=self.curator_run_name)

    def _bank_id(self, client: Client) -> int:
        name = str(self.curator_bank)
        for bank in client.list_banks():
            if bank.name == name:
                return bank.bank_id
        if name.isdigit():
            return client.get_bank(int(name)).bank_id
        raise ValueError(f"curator_bank {name!r}: no bank of that name or id")

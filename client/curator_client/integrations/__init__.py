"""Trainer integrations. Each lives in its own module, imported only when asked for:

    curator_client.integrations.torch     CuratorSampler / CuratorBatchSampler   [torch]
    curator_client.integrations.trl       CuratorGRPOTrainer (+ mixin, callback) [trl]
    curator_client.integrations.verl      CuratorCurriculumSampler               [verl]
    curator_client.integrations.datasets  add_dataset: a bank from a dataset over HTTP

This package itself imports only the pure-Python core: `IndexMap` (dataset index ↔ the
bank's external id) and `TicketLedger` (selected tickets waiting for feedback).
"""

from ._core import POSITION_FORMAT, IndexMap, TicketLedger

__all__ = ["IndexMap", "POSITION_FORMAT", "TicketLedger"]

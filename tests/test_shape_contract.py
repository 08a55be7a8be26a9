"""One shape, three declarations: the use case's dataclass (runs/, bank/), the HTTP
schema (api/schemas.py, what OpenAPI publishes) and the client's model
(curator_client/_models.py). They live in two distributions (the client installs
without the server), so they cannot share classes; this test keeps them from drifting.

Rules, per shape:
- every field the client reads is one the server sends (bar the ones the client fills
  itself, named below);
- every field the server sends, the client mirrors (bar the ones named below, with why);
- a field the client requires, the server always sends (the client may be more lenient,
  never stricter: an older server's answer must still parse);
- the use case's dataclass carries exactly the schema's fields (bar the named ones).
"""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from curator.api import schemas as api
from curator.bank.ingest import AddResult
from curator.runs.feedback import Receipt, ResultRecord
from curator.runs.metrics import MetricsReceipt
from curator.runs.selection import SelectedItem, SelectResult
from curator.runs.value import ValueReport
from curator_client import _models as client

# (client model, schema, client-only fields, server fields the client does not mirror)
CLIENT = [
    (client.Bank, api.BankPublic, set(), set()),
    (client.AddProblemsResult, api.ProblemsAdded, set(), set()),
    (client.CreatedRun, api.RunCreated, set(), set()),
    (client.TicketCounts, api.TicketCounts, set(), set()),
    (client.RunInfo, api.RunPublic, set(), set()),
    (client.Problem, api.SelectedProblem, set(), set()),
    (client.Ticket, api.SelectResponse, set(), set()),
    (client.FeedbackReceipt, api.FeedbackReceipt, set(), set()),
    # http_status: the response's status line, not a body field
    (client.Health, api.Readiness, {"http_status"}, set()),
    (client.Result, api.ResultIn, set(), set()),
]

# (use case dataclass, schema, dataclass-only fields, schema-only fields)
DOMAIN = [
    (Receipt, api.FeedbackReceipt, set(), set()),
    (ResultRecord, api.ResultIn, set(), set()),
    (SelectedItem, api.SelectedProblem, set(), set()),
    # problems travel pre-encoded (bank/payloads.py); replayed is the Curator-Replayed
    # header, not a body field
    (SelectResult, api.SelectResponse, {"problems_json", "replayed"}, {"problems"}),
    (ValueReport, api.RunValue, set(), set()),
    (MetricsReceipt, api.MetricsReceiptOut, set(), set()),
    # what the write hands the file caches (bank/ingest.py), not the caller
    (AddResult, api.ProblemsAdded, {"first_position", "vectors", "payloads"}, set()),
]


def _fields(cls) -> dict[str, bool]:
    """name → required, for a dataclass or a pydantic model."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {k: f.is_required() for k, f in cls.model_fields.items()}
    return {f.name: f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("model, schema, own, unmirrored", CLIENT,
                         ids=[c[0].__name__ for c in CLIENT])
def test_the_client_model_mirrors_the_servers_schema(model, schema, own, unmirrored):
    mine, theirs = _fields(model), _fields(schema)
    assert set(mine) - own - set(theirs) == set(), "the client reads what no server sends"
    assert set(theirs) - unmirrored - set(mine) == set(), "the client drops a field"
    stricter = {k for k, req in mine.items() if req and not theirs.get(k, False)}
    assert stricter == set(), "the client requires what the server may leave out"


@pytest.mark.parametrize("record, schema, only_record, only_schema", DOMAIN,
                         ids=[d[0].__name__ for d in DOMAIN])
def test_the_use_cases_record_carries_the_schemas_fields(record, schema, only_record,
                                                          only_schema):
    assert set(_fields(record)) - only_record == set(_fields(schema)) - only_schema


def test_the_named_exceptions_are_real_fields():
    """An exception for a field that no longer exists would hide the next drift."""
    for model, schema, own, unmirrored in CLIENT:
        assert own <= set(_fields(model)) and unmirrored <= set(_fields(schema))
    for record, schema, only_record, only_schema in DOMAIN:
        assert only_record <= set(_fields(record))
        assert only_schema <= set(_fields(schema))

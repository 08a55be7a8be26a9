"""The shared core: index mapping, and the ticket ledger against a real running service."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from curator_client import InvalidRequest
from curator_client.integrations import IndexMap, TicketLedger
from curator_client.integrations._core import column_values, get_field, mean_log_ratio
from curator_client.integrations.datasets import add_dataset, problem_from_row, prompt_text
from tests.integrations.helpers import arith_rows, wait_applied


def test_importing_the_client_or_the_core_pulls_in_no_framework() -> None:
    code = (
        "import sys, curator_client, curator_client.integrations; "
        "bad = [m for m in ('torch', 'numpy', 'trl', 'verl', 'datasets', 'transformers') "
        "if m in sys.modules]; "
        "mods = [m for m in sys.modules if m.startswith('curator_client.integrations.')]; "
        "print(bad, mods); sys.exit(1 if bad or mods != ['curator_client.integrations._core'] "
        "else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["", "._core", ".datasets", ".torch", ".trl", ".verl"])
def test_public_names_are_sorted_and_importable(name: str) -> None:
    import importlib

    if name in (".torch", ".verl"):
        pytest.importorskip("torch")
    if name == ".trl":
        pytest.importorskip("trl")
    module = importlib.import_module("curator_client.integrations" + name)
    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, n) for n in module.__all__)


def test_get_field_reads_dotted_paths_and_literal_names() -> None:
    row = {"extra_info": {"index": 7, "split": "train"}, "a.b": 1, "a": {"b": 2}}
    assert get_field(row, "extra_info.index") == 7
    assert get_field(row, "a.b") == 1  # a column literally named "a.b" wins
    with pytest.raises(KeyError, match="extra_info.nope"):
        get_field(row, "extra_info.nope")


def test_index_map_positions_and_id_columns() -> None:
    pos = IndexMap.positional(5)
    assert pos.external_id(3) == "row-3" and pos.index("row-3") == 3
    for bad in ("row-5", "row-x", "3", "row--1"):
        with pytest.raises(KeyError, match="not a row of this dataset"):
            pos.index(bad)
    rows = [{"id": f"q{i}", "extra_info": {"index": 10 + i}} for i in range(4)]
    by_id = IndexMap.from_dataset(rows, "id")
    assert by_id.index("q2") == 2 and by_id.external_id(1) == "q1"
    nested = IndexMap.from_dataset(rows, "extra_info.index", "ex-{}")
    assert nested.index("ex-12") == 2 and nested.index_of_value(13) == 3
    with pytest.raises(ValueError, match="not unique"):
        IndexMap.from_values(["a", "b", "a"])
    with pytest.raises(ValueError, match="once"):
        IndexMap.positional(3, "row")


def test_column_values_reads_a_hf_dataset_column_at_once() -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"p": "x", "extra_info": {"index": i}} for i in range(3)])
    assert column_values(ds, "extra_info.index") == [0, 1, 2]
    assert IndexMap.from_dataset(ds).external_id(2) == "row-2"


def test_mean_log_ratio_and_prompt_text() -> None:
    assert mean_log_ratio([-1.0, -2.0, -3.0], [-1.5, -2.0, -9.0], [1, 1, 0]) == 0.25
    assert mean_log_ratio([], []) == 0.0
    assert prompt_text([{"role": "user", "content": "2+2?"}]) == "2+2?"
    assert problem_from_row({"q": "hi", "answer": 3, "x": 1, "f": object()}, 4,
                            prompt_field="q") == {
        "external_id": "row-4", "prompt": "hi", "answer": "3", "metadata": {"x": 1}}


def _run(admin, name: str, n: int = 40, strategy: str = "uniform", **params):
    bank = admin.create_bank(name)
    result, index_map = add_dataset(admin, bank.bank_id, arith_rows(n), metadata_fields=["level"])
    assert result.added == n and index_map.positional_ids
    return admin.create_run(bank.bank_id, strategy=strategy, params=params, seed=0), index_map


def test_ledger_matches_results_to_the_oldest_ticket_holding_the_index(admin) -> None:
    run, index_map = _run(admin, "ledger-order")
    ledger = TicketLedger(run, index_map, strict=True)
    first = ledger.select(8)
    second = ledger.select(8)  # selected ahead, as a prefetching loader does
    assert ledger.pending == 2 and len(set(first)) == 8
    assert [index_map.external_id(i) for i in first] == [
        p.external_id for p in ledger._pending[0].batch.problems]
    first_ticket = ledger._pending[0].batch.ticket_id
    for i in first:
        assert ledger.record(i, [1.0, 0.0, 1.0, 0.0], [0.01, -0.02, 0.0, 0.03])
    assert ledger.report(partial=False) and ledger.pending == 1  # only the complete one
    assert ledger._pending[0].indices == second
    outside = next(i for i in range(len(index_map)) if i not in second)
    assert not ledger.record(outside, [1.0]) and ledger.unmatched == 1
    # partial: the second ticket goes out with the results it has
    ledger.record(second[0], [0.0, 1.0])
    ledger.record(second[1], [float("nan"), float("nan")])  # unscorable: seen, not sent
    (receipt,) = ledger.report(partial=True)
    assert receipt.accepted == 1 and ledger.pending == 0
    assert receipt.ticket_id != first_ticket
    info = wait_applied(run, 2)
    assert info.tickets.reported == 2 and info.model_version == 2


def test_ledger_partial_report_keeps_tickets_selected_after_the_step(admin) -> None:
    run, index_map = _run(admin, "ledger-prefetch")
    # pools of 8 drawn without replacement within an epoch: the tickets are disjoint
    ledger = TicketLedger(run, index_map, pool_size=8, strict=True)
    skipped = ledger.select(4)  # a ticket the trainer never trained on
    used = ledger.select(4)
    ahead = ledger.select(4)  # the loader's prefetch of the next step
    assert not set(skipped) & set(used)
    for i in used[:3]:
        ledger.record(i, [1.0, 0.0])
    (receipt,) = ledger.report(partial=True)
    assert receipt.accepted == 3
    assert ledger.pending == 1 and ledger.dropped == 1
    assert ledger._pending[0].indices == ahead


def test_ledger_reports_feedback_errors_without_stopping_training(admin, caplog) -> None:
    run, index_map = _run(admin, "ledger-errors")
    ledger = TicketLedger(run, index_map)  # strict=False: log and drop
    (i, *_) = ledger.select(2)
    ledger.record(i, [1.0, 0.0], [0.0, math.inf])  # inf log-ratio: that rollout is dropped
    (result,) = ledger._pending[0].results.values()
    assert result["rewards"] == [1.0] and result["log_ratios"] == [0.0]
    result["problem_id"] = 10**9  # corrupt it: the service refuses a problem not in the ticket
    assert ledger.report(partial=True) == []
    assert ledger.dropped == 1 and ledger.pending == 0 and "refused" in caplog.text
    strict = TicketLedger(run, index_map, strict=True)
    (j, *_) = strict.select(2)
    strict.record(j, [1.0, 0.0])
    next(iter(strict._pending[0].results.values()))["problem_id"] = 10**9

    with pytest.raises(InvalidRequest):
        strict.report(partial=True)

"""One rule for dataset row → problem: the server's importer (`curator bank import`) and
the client's `add_dataset` must turn the same rows into the same problems."""

from __future__ import annotations

import math

import pytest

from curator.bank.importer import FieldMap
from curator_client.integrations.datasets import problem_from_row

ROWS = [
    {"uid": "a-1", "prompt": "What is 2 + 2?", "answer": 4, "level": 1, "source": "gsm"},
    {"uid": 7, "prompt": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Name a prime."}],
     "answer": "2", "extra_info": {"index": 3, "split": "train"}},
    {"uid": "c", "prompt": "Missing values", "answer": None, "difficulty": math.nan,
     "tags": ["a", "b"], "blob": b"\x00\x01"},  # bytes are not JSON: left out
    {"uid": "d", "prompt": {"text": "structured"}, "answer": "x",
     "metadata": {"level": 5, "topic": "algebra"}, "level2": 2},  # our export format
]


def _server(row: dict, index: int, id_field: str | None) -> dict:
    fields = FieldMap(external_id=id_field, prompt="prompt",
                      answer="answer", embedding=None)
    rec = fields.record(row, index)
    return {"external_id": rec.external_id, "prompt": rec.prompt, "answer": rec.answer,
            "metadata": rec.metadata}


def _client(row: dict, index: int, id_field: str | None) -> dict:
    p = problem_from_row(row, index, id_field=id_field, answer_field="answer")
    return {"external_id": p["external_id"], "prompt": p["prompt"],
            "answer": p.get("answer"), "metadata": p.get("metadata", {})}


@pytest.mark.parametrize("id_field", ["uid", None])
@pytest.mark.parametrize("index", range(len(ROWS)))
def test_importer_and_client_map_a_row_to_the_same_problem(index, id_field) -> None:
    row = ROWS[index]
    server, client = _server(row, index, id_field), _client(row, index, id_field)
    assert server == client
    if id_field is None:
        assert client["external_id"] == f"row-{index}"


def test_the_contract_rows_exercise_every_rule() -> None:
    got = [_client(r, i, "uid") for i, r in enumerate(ROWS)]
    assert got[1]["prompt"] == "Be brief.\nName a prime."  # chat messages
    assert got[1]["metadata"]["extra_info"] == {"index": 3, "split": "train"}
    assert got[2]["metadata"] == {"difficulty": None, "tags": ["a", "b"]}  # NaN, bytes
    assert got[3]["metadata"] == {"level": 5, "topic": "algebra", "level2": 2}  # merged
    assert got[0]["answer"] == "4" and got[2]["answer"] is None


@pytest.mark.parametrize("row, id_field, field", [
    ({"id": "x", "promt": "typo"}, "id", "prompt"),  # misspelt / missing prompt column
    ({"id": "x", "prompt": ""}, "id", "prompt"),  # empty prompt
    ({"id": "x", "prompt": None}, "id", "prompt"),
    ({"uid": "x", "prompt": "p"}, "id", "id"),  # the named id field is absent
])
def test_both_paths_refuse_the_same_bad_rows(row, id_field, field) -> None:
    from curator.bank.importer import RowError

    with pytest.raises(RowError) as err:
        _server(row, 4, id_field)
    assert err.value.details == {"row": 5, "field": field} and field in str(err.value)
    with pytest.raises((KeyError, ValueError)):
        _client(row, 4, id_field)

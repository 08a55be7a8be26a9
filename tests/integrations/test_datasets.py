"""Banks built from a dataset line up with the samplers' dataset indices, whichever way
they are built: `curator bank import` (JSONL, Parquet, a `datasets` directory) on the
server, or `add_dataset` over HTTP."""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

from sqlalchemy import create_engine, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from curator_client.integrations import IndexMap  # noqa: E402
from curator_client.integrations.datasets import add_dataset, iter_rows  # noqa: E402
from tests.integrations.helpers import arith_rows  # noqa: E402


def _external_ids(url: str, bank_name: str) -> list[tuple[str, str, str | None, dict]]:
    from curator.db.models import Bank, Problem

    engine = create_engine(url)
    with Session(engine) as s:
        bank = s.scalars(select(Bank).where(Bank.name == bank_name)).one()
        rows = s.scalars(select(Problem).where(Problem.bank_id == bank.id)
                         .order_by(Problem.position))
        out = [(p.external_id, p.prompt, p.answer, p.meta) for p in rows]
    engine.dispose()
    return out


def _sources(tmp_path, rows):
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict(train=ds, test=ds.select(range(3))).save_to_disk(str(tmp_path / "dd"))
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    with open(tmp_path / "rows.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return ds, {"dir": tmp_path / "ds", "dict-dir": tmp_path / "dd",
                "parquet": tmp_path / "rows.parquet", "jsonl": tmp_path / "rows.jsonl"}


@pytest.mark.parametrize("kind", ["dir", "dict-dir", "parquet", "jsonl"])
def test_cli_bank_import_positions_match_the_index_map(kind, sqlite_settings, tmp_path,
                                                       monkeypatch) -> None:
    from curator.cli import main

    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    rows = [{k: v for k, v in r.items() if k != "uid"} for r in arith_rows(25)]
    ds, sources = _sources(tmp_path, rows)
    assert main(["bank", "import", str(sources[kind]), "--bank", "b", "--create",
                 "--metadata-fields", "level"]) == 0
    stored = _external_ids(sqlite_settings.sqlalchemy_url, "b")
    index_map = IndexMap.from_dataset(ds)  # positions: no id column
    assert len(stored) == 25
    for ext, prompt, answer, meta in stored:
        i = index_map.index(ext)
        assert (prompt, answer, meta) == (ds[i]["prompt"], ds[i]["answer"],
                                          {"level": ds[i]["level"]})


def test_cli_bank_import_with_an_id_column(sqlite_settings, tmp_path, monkeypatch) -> None:
    from curator.cli import main

    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    ds, sources = _sources(tmp_path, arith_rows(12))
    assert main(["bank", "import", str(sources["dir"]), "--bank", "u", "--create",
                 "--id-field", "uid", "--prompt-field", "prompt"]) == 0
    index_map = IndexMap.from_dataset(ds, "uid")
    stored = _external_ids(sqlite_settings.sqlalchemy_url, "u")
    assert [index_map.index(ext) for ext, *_ in stored] == list(range(12))


@pytest.mark.parametrize("kind", ["dir", "dict-dir", "parquet", "jsonl", "object"])
def test_add_dataset_reads_every_source_kind(kind, admin, tmp_path) -> None:
    rows = arith_rows(15)
    ds, sources = _sources(tmp_path, rows)
    source = ds if kind == "object" else sources[kind]
    assert list(iter_rows(source, batch_size=4)) == rows
    bank = admin.create_bank(f"add-dataset-{kind}")
    result, index_map = add_dataset(admin, bank.bank_id, source, id_field="uid",
                                    id_format="arith-{}", metadata_fields=["level"])
    assert result.added == 15 and index_map.index("arith-q4") == 4
    again, _ = add_dataset(admin, bank.bank_id, source, id_field="uid", id_format="arith-{}")
    assert again.added == 0 and len(again.duplicates) == 15  # re-running is safe

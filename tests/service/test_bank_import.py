"""Bank import from JSONL and Parquet through the CLI, with the FAISS index built."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from curator.bank.embed import HashingEmbedder
from curator.bank.files import BankFiles
from curator.cli import main
from curator.db.models import Bank, Problem


def _bank(url: str, name: str) -> tuple[Bank, list[Problem]]:
    engine = create_engine(url)
    with Session(engine) as s:
        bank = s.scalars(select(Bank).where(Bank.name == name)).one()
        rows = list(s.scalars(select(Problem).where(Problem.bank_id == bank.id)
                              .order_by(Problem.position)))
    engine.dispose()
    return bank, rows


def test_jsonl_import_with_field_map_and_index(sqlite_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    path = tmp_path / "probs.jsonl"
    with open(path, "w") as fh:
        for i in range(120):
            fh.write(json.dumps({"uid": f"u{i}", "question": f"what is {i} * 3?",
                                 "solution": str(3 * i), "level": i % 4,
                                 "metadata": {"source": "gen"}}) + "\n")
    assert main(["bank", "import", str(path), "--bank", "j", "--create", "--id-field", "uid",
                 "--prompt-field", "question", "--answer-field", "solution"]) == 0
    bank, rows = _bank(sqlite_settings.sqlalchemy_url, "j")
    assert bank.size == 120 and len(rows) == 120
    assert rows[7].external_id == "u7" and rows[7].answer == "21"
    assert rows[7].meta == {"source": "gen", "level": 3}
    vec = np.frombuffer(rows[7].embedding, dtype="<f4")
    np.testing.assert_allclose(vec, HashingEmbedder(bank.dim).embed(["what is 7 * 3?"])[0],
                               rtol=1e-6)
    files = BankFiles(sqlite_settings.data_dir)
    assert files.index(bank.id).state(bank.size) == ("ready", 120)
    store = files.store(bank.id, bank.dim)
    np.testing.assert_array_equal(store.lookup(np.array([7])), vec[None, :])
    # the index finds a problem from its own vector
    _, ids = files.index(bank.id).search(vec[None, :], 1)
    assert ids[0, 0] == 7


def test_parquet_import_provided_vectors_and_store_rebuild(sqlite_settings, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 8)).astype(np.float32)
    table = pa.table({"id": [f"p{i}" for i in range(50)],
                      "prompt": [f"prompt {i}" for i in range(50)],
                      "embedding": [v.tolist() for v in vecs],
                      "skill": [i % 5 for i in range(50)]})
    path = tmp_path / "probs.parquet"
    pq.write_table(table, path)
    assert main(["bank", "import", str(path), "--bank", "pq", "--create", "--embedder",
                 "provided", "--dim", "8"]) == 0
    bank, rows = _bank(sqlite_settings.sqlalchemy_url, "pq")
    assert bank.size == 50 and rows[3].meta == {"skill": 3}
    files = BankFiles(sqlite_settings.data_dir)
    store = files.store(bank.id, bank.dim)
    # the store is a derived cache: delete it and it is rebuilt from the database
    store.path.unlink()
    from curator.bank.access import row_fetcher
    from curator.db.session import make_engine, make_session_factory

    sf = make_session_factory(make_engine(sqlite_settings.sqlalchemy_url))
    fresh = BankFiles(sqlite_settings.data_dir).store(bank.id, bank.dim)
    fresh.sync(bank.size, row_fetcher(sf, bank.id))
    np.testing.assert_array_equal(fresh.lookup(np.arange(50)), vecs)


def test_bad_rows_are_refused_by_row_and_field_and_nothing_is_created(
        sqlite_settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    good = [{"id": f"p{i}", "prompt": f"what is {i}?"} for i in range(5)]
    cases = {
        "typo": (good, ["--prompt-field", "promt"], "row 1 has no prompt in field 'promt'"),
        "noid": (good, ["--id-field", "uid"], "row 1 has no id field 'uid'"),
        "empty": (good[:3] + [{"id": "e", "prompt": ""}], [], "row 4 has no prompt"),
        "dup": (good + [{"id": "p2", "prompt": "again"}], [], "rows 3 and 6 share the id"),
    }
    for name, (rows, flags, message) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert main(["bank", "import", str(path), "--bank", name, "--create", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "nothing was imported" in err[0], err
    engine = create_engine(sqlite_settings.sqlalchemy_url)
    with Session(engine) as s:
        assert s.scalars(select(Bank)).all() == []  # no empty bank left behind
    engine.dispose()
    # without an `id` column (and no --id-field) rows get their positions
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(3)))
    assert main(["bank", "import", str(path), "--bank", "plain", "--create"]) == 0
    assert [p.external_id for p in _bank(sqlite_settings.sqlalchemy_url, "plain")[1]] == [
        "row-0", "row-1", "row-2"]


def test_cli_mistakes_get_one_line_and_exit_2(sqlite_settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    monkeypatch.delenv("CURATOR_DEBUG", raising=False)
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "prompt": "p"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "p"}\n{"id": "b", prompt\n')
    csv = tmp_path / "x.csv"
    csv.write_text("id,prompt\na,b\n")
    assert main(["bank", "import", str(ok), "--bank", "h", "--create"]) == 0
    capsys.readouterr()
    cases = [
        (["bank", "import", str(bad), "--bank", "m", "--create"], "bad.jsonl line 2: not JSON"),
        (["bank", "import", str(csv), "--bank", "c", "--create"], "cannot read x.csv"),
        (["bank", "import", str(ok), "--bank", "p", "--create", "--embedder", "provided"],
         "needs its embedding dim"),
        (["bank", "import", str(ok), "--bank", "h", "--embedder", "minilm"],
         "embeds with 'hash', not 'minilm'"),
        (["run", "export", "1", "-o", str(tmp_path / "no" / "such" / "x.parquet")],
         "No such file or directory"),
    ]
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse-style refusals exit with their message
            code = 2 if exc.code not in (0, None) else 0
            err = [str(exc.code)] if isinstance(exc.code, str) else \
                capsys.readouterr().err.strip().splitlines()
        else:
            err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, argv
        assert len(err) == 1 and message in err[0], (argv, err)
        assert "Traceback" not in err[0]

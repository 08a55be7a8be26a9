"""The `curator` command as a newcomer meets it: help, version, first-run errors, token note."""

from __future__ import annotations

import os
import sqlite3

import pytest

from curator import cli
from curator.core.config import Settings


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No CURATOR_* settings from the caller's shell; the data dir is a fresh temp path."""
    for key in list(os.environ):
        if key.startswith("CURATOR_"):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    monkeypatch.setenv("CURATOR_DATA_DIR", str(data))
    return data


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("curator ") and out != "curator unknown", out


def test_help_lists_every_environment_variable_with_a_line(capsys):
    out = _help(capsys)
    assert set(cli.ENV_HELP) == set(Settings.model_fields)  # the list keeps up with Settings
    for name in Settings.model_fields:
        line = next((ln for ln in out.splitlines() if f"CURATOR_{name.upper()} " in ln), None)
        assert line is not None, f"CURATOR_{name.upper()} missing from curator --help"
        assert cli.ENV_HELP[name] in line
    assert "CURATOR_DATA_DIR" in out and "(default: data)" in out
    assert "curator --help" in _help(capsys, "serve")  # subcommands point at the list


def test_subcommand_help_gives_text_and_defaults(capsys):
    serve = " ".join(_help(capsys, "serve").split())  # undo argparse's wrapping
    assert "(default: 127.0.0.1)" in serve and "(default: 8000)" in serve
    assert "(default: 4000)" in " ".join(_help(capsys, "bank", "demo").split())
    imp = " ".join(_help(capsys, "bank", "import").split())
    for text in ("--dim DIM embedding dimension", '(default: "id" if the file has it',
                 "(default: prompt)",
                 "(default: answer)", "(default: embedding)", "(default: 5000)",
                 "(default: hash)"):
        assert text in imp, text


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, captured.err
    return err


def test_bank_import_before_migrate_says_what_to_run(clean_env, tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "prompt": "1 + 1"}\n')
    argv = ["bank", "import", str(rows), "--bank", "b", "--create"]
    # no data dir at all ("unable to open database file" before)
    err = _one_line_error(capsys, argv)
    assert "run `curator migrate` first" in err
    assert not clean_env.exists()  # nothing created on the way
    # a database file without Curator's tables ("no such table: banks" before)
    clean_env.mkdir()
    sqlite3.connect(clean_env / "curator.db").close()
    err = _one_line_error(capsys, argv)
    assert "no Curator tables" in err and "run `curator migrate` first" in err
    # after migrate the same command works
    assert cli.main(["migrate"]) == 0
    assert cli.main(argv) == 0
    assert "1 added" in capsys.readouterr().out


def test_bank_import_on_an_unreachable_database_is_one_line(clean_env, tmp_path, capsys,
                                                           monkeypatch):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "prompt": "1 + 1"}\n')
    monkeypatch.setenv("CURATOR_DATABASE_URL",
                       "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    err = _one_line_error(capsys, ["bank", "import", str(rows), "--bank", "b"])
    assert "cannot open the database" in err and "secret" not in err


def test_serve_before_migrate_says_what_to_run(clean_env, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served"))
    err = _one_line_error(capsys, ["serve"])
    assert "curator migrate" in err and "--migrate" in err


def test_admin_token_note_names_the_file_only_when_there_is_one(clean_env, capsys,
                                                                monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    token_file = clean_env / "admin_token"
    assert cli.main(["serve", "--migrate"]) == 0  # the run that writes the file says so
    out = capsys.readouterr().out
    token = token_file.read_text().strip()
    assert f"admin token: {token} (generated, saved in {token_file})" in out
    assert cli.main(["serve"]) == 0  # a restart reads it back
    assert f"admin token: {token} (saved in {token_file})" in capsys.readouterr().out

    token_file.unlink()
    monkeypatch.setenv("CURATOR_ADMIN_TOKEN", "operator-set-token")
    assert cli.main(["serve"]) == 0
    out = capsys.readouterr().out
    assert "admin token: from CURATOR_ADMIN_TOKEN" in out
    assert "saved in" not in out and "operator-set-token" not in out
    assert not token_file.exists()

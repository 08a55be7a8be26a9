"""Every subcommand's likely mistakes: a non-zero exit and one line saying what to do,
never a traceback (argparse's own refusals keep their usage line above the error)."""

from __future__ import annotations

import os

import pytest

from curator import cli

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/x"


@pytest.fixture
def env(sqlite_settings, tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("CURATOR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CURATOR_DATABASE_URL", sqlite_settings.sqlalchemy_url)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(sqlite_settings.data_dir))
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "q"}\n')
    assert cli.main(["bank", "import", str(ok), "--bank", "h", "--create"]) == 0
    return tmp_path


def _run(argv, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
        if isinstance(exc.code, str):
            return code, [exc.code]
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.strip()
                  and " INFO " not in line]  # alembic's INFO lines (logging, not errors)


# (argv, extra environment, what the one line must say)
MISTAKES = [
    ([], {}, "required: command"),
    (["bogus"], {}, "invalid choice: 'bogus'"),
    (["bank"], {}, "required: bank_cmd"),
    (["run"], {}, "required: run_cmd"),
    (["bank", "import", "{tmp}/missing.jsonl", "--bank", "x", "--create"], {},
     "no such file"),
    (["bank", "import", "{tmp}/ok.jsonl", "--bank", "nosuch"], {}, "pass --create"),
    (["bank", "import", "{tmp}/ok.jsonl", "--bank", "y", "--create", "--prompt-field",
      "promt"], {}, "no prompt in field 'promt'"),
    (["bank", "import", "{tmp}/ok.jsonl", "--bank", "y", "--create", "--id-field", "ident"],
     {}, "'ident'"),
    (["bank", "import", "{tmp}/ok.jsonl", "--bank", "z", "--create", "--dim", "-3"], {},
     "dim"),
    (["bank", "demo", "-n", "0"], {}, "-n must be ≥ 1"),
    (["run", "export", "999", "-o", "{tmp}/x.parquet"], {}, "run 999 not found"),
    (["run", "export", "abc", "-o", "{tmp}/x.parquet"], {}, "invalid int value: 'abc'"),
    (["worker"], {}, "needs CURATOR_REDIS_URL"),
    (["sim", "--scenario", "nosuch"], {}, "unknown scenario 'nosuch'"),
    (["sim", "--strategies", "nosuch", "--steps", "1"], {}, "unknown strategy 'nosuch'"),
    (["sim", "--steps", "0"], {}, "must be ≥ 1"),
    (["migrate"], {"CURATOR_MODE": "production"}, "CURATOR_ADMIN_TOKEN must be set"),
    (["migrate"], {"CURATOR_MAX_BATCH_SIZE": "abc"}, "CURATOR_MAX_BATCH_SIZE"),
    (["migrate"], {"CURATOR_DATABASE_URL": UNREACHABLE}, "check CURATOR_DATABASE_URL"),
    (["bank", "import", "{tmp}/ok.jsonl", "--bank", "q", "--create"],
     {"CURATOR_DATABASE_URL": UNREACHABLE}, "cannot open the database"),
    (["run", "export", "1", "-o", "{tmp}/x.parquet"], {"CURATOR_DATABASE_URL": UNREACHABLE},
     "cannot open the database"),
]


@pytest.mark.parametrize(("argv", "extra", "says"), MISTAKES,
                         ids=[" ".join(m[0][:3]) + (f" {next(iter(m[1]))}" if m[1] else "")
                              for m in MISTAKES])
def test_a_mistake_gets_one_line_and_a_non_zero_exit(env, capsys, monkeypatch, argv, extra,
                                                     says):
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    code, lines = _run([a.replace("{tmp}", str(env)) for a in argv], capsys)
    assert code != 0, (argv, lines)
    usage = [line for line in lines if line.startswith("usage:") or line.startswith(" ")]
    message = [line for line in lines if line not in usage]
    assert len(message) == 1, (argv, lines)
    assert says in message[0], (argv, message)


def test_every_subcommand_is_walked():
    """A new subcommand must bring its mistakes here."""
    parser = cli.build_parser()
    walked = {tuple(a for a in m[0][:2] if not a.startswith("-") and "{" not in a)
              for m in MISTAKES}
    commands = set()
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            commands |= ({(name, n) for n in nested[0].choices} if nested else {(name,)})
    missing = {c for c in commands - walked if c != ("serve",)}  # serve: test_cli.py
    assert not missing, f"subcommands without a mistake walked: {sorted(missing)}"

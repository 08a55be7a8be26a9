"""One metadata field read by the database (`bank.access.field_values`): the same values
a Python `meta[field]` gives, on SQLite and on PostgreSQL, for a sample or a whole bank."""

from __future__ import annotations

import numpy as np
from sqlalchemy import insert

from curator.bank import access
from curator.db.models import Bank, Problem
from curator.db.session import make_engine, make_session_factory

METAS = [
    {"level": 3, "a.b": "dot", 'we"ird': "quote", "back\\slash": 1, "niveau é": "ü",
     "a[0]": 2, "list": [1, 2], "flag": True, "none": None, "nested": {"k": 1}, "x": 1.5,
     "big": 2**53 + 1, "text_true": "true"},
    {"level": "3", "flag": False},
    {},
    {"level": 0},
]
FIELDS = ["level", "a.b", 'we"ird', "back\\slash", "niveau é", "a[0]", "list", "flag", "none",
          "nested", "x", "big", "text_true", "absent"]


def test_field_values_match_python_lookup(database_url):
    engine = make_engine(database_url)
    n = 5_000  # more than one IN chunk on SQLite
    metas = [METAS[i % len(METAS)] for i in range(n)]
    with engine.begin() as conn:
        conn.execute(insert(Bank), [{"id": 1, "name": "fields", "embedder": "provided",
                                     "dim": 2, "size": n}])
        conn.execute(insert(Problem), [
            {"bank_id": 1, "position": i, "external_id": f"p{i}", "prompt": "p",
             "metadata": m, "embedding": b"\0" * 8} for i, m in enumerate(metas)])
    sample = np.sort(np.random.default_rng(0).choice(n, 3_000, replace=False))
    with make_session_factory(engine)() as s:
        for field in FIELDS:
            whole = {i: m[field] for i, m in enumerate(metas) if m.get(field) is not None}
            assert access.field_values(s, 1, None, field) == whole, field
            some = {int(i): whole[int(i)] for i in sample if int(i) in whole}
            assert access.field_values(s, 1, sample, field) == some, field
            assert access.categories(s, 1, sample, field) == [
                None if (v := metas[i].get(field)) is None else str(v) for i in sample]
        # booleans stay booleans (SQLite's json_extract would give 1), so a category
        # reads "True" on both databases, as the worker's selected_by counts do
        assert access.categories(s, 1, np.array([0, 1]), "flag") == ["True", "False"]
    engine.dispose()

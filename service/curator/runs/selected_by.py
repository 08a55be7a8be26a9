"""What a ticket selected, counted by metadata value: `history.selected_by`.

The worker records one aggregate per applied ticket, in the transaction that writes its
history point, so the admin history "selected share by field" reads one row per step
instead of joining the ticket's items with their problems. Stored shape:

    {"n": 256, "fields": {"difficulty": {"1": 60, "2": 70, ...}, "source": {...}}}

`n` is the number of the ticket's items found in the bank; `fields` holds every key
present in any item's metadata, each value stringified as `group_value` does (an item
without the key, or with null, counts as "(none)"), so each field's counts sum to `n`.
The row is bounded whatever the metadata looks like: per field the `MAX_VALUES` most
frequent values are kept and the rest (and any value longer than `MAX_VALUE_CHARS`)
count as "(other)"; past `MAX_FIELDS` keys the ones with the most distinct values (free
text) are left out and `"fields_capped": true` is set, so a reader asking for a left-out
field falls back to the join for that ticket instead of reading "(none)".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curator.bank import access
from curator.db.models import TicketItem

NONE_VALUE = "(none)"
OTHER_VALUE = "(other)"
MAX_FIELDS = 32
MAX_VALUES = 32
MAX_VALUE_CHARS = 100


def group_value(meta: dict | None, field: str) -> str:
    """A metadata value as a group label: stringified, missing → "(none)"."""
    value = (meta or {}).get(field)
    return NONE_VALUE if value is None else str(value)


def _capped(counts: Counter[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    other = 0
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for value, n in ranked:
        if len(out) < MAX_VALUES and len(value) <= MAX_VALUE_CHARS and value != OTHER_VALUE:
            out[value] = n
        else:
            other += n
    if other:
        out[OTHER_VALUE] = other
    return out


def count_selected(metas: Iterable[dict | None]) -> dict[str, Any]:
    """The aggregate (module docstring) of the selected problems' metadata."""
    rows = [m or {} for m in metas]
    keys = sorted({k for m in rows for k in m})
    counts = {k: Counter(group_value(m, k) for m in rows) for k in keys}
    out: dict[str, Any] = {"n": len(rows)}
    if len(keys) > MAX_FIELDS:
        keys = sorted(keys, key=lambda k: (len(counts[k]), k))[:MAX_FIELDS]
        out["fields_capped"] = True
    out["fields"] = {k: _capped(counts[k]) for k in sorted(keys)}
    return out


def selected_counts(session: Session, bank_id: int, ticket_id: str) -> dict[str, Any]:
    """The aggregate for one ticket: its items' metadata, by primary key."""
    # Two lookups by primary key, not a join: SQLite plans that join as a scan of the
    # whole bank's problems (480 ms an apply at 1M problems).
    positions = list(session.scalars(
        select(TicketItem.problem_id).where(TicketItem.ticket_id == ticket_id)))
    if not positions:
        return count_selected([])
    return count_selected(access.metadata(session, bank_id, positions).values())


def field_counts(aggregate: dict[str, Any] | None,
                 field: str) -> tuple[Counter[str], bool] | None:
    """`field`'s value counts in a stored aggregate and whether any item carried the field;
    None when the aggregate cannot say (absent: recorded before it existed; or the field
    was left out past MAX_FIELDS): the caller then counts that ticket from its items."""
    if aggregate is None:
        return None
    fields = aggregate.get("fields") or {}
    if field in fields:
        return Counter(fields[field]), True
    if aggregate.get("fields_capped"):
        return None
    n = int(aggregate.get("n") or 0)
    return (Counter({NONE_VALUE: n}) if n else Counter()), False

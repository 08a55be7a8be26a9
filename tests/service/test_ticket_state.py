"""The ticket lifecycle type: its moves, and that it stores and compares as the words."""

from __future__ import annotations

from curator.core.tickets import TicketState as T


def test_lifecycle_moves() -> None:
    assert T.ISSUED.can_become(T.REPORTED)
    assert T.REPORTED.can_become(T.APPLIED) and T.REPORTED.can_become(T.FAILED)
    assert not T.ISSUED.can_become(T.APPLIED)  # feedback comes first
    assert not any(T.APPLIED.can_become(s) or T.FAILED.can_become(s) for s in T)
    assert [s for s in T if s.final] == [T.APPLIED, T.FAILED]
    assert T.REPORTED == "reported" and str(T.FAILED) == "failed"
    assert tuple(T) == ("issued", "reported", "applied", "failed")

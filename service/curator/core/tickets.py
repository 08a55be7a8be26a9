"""The ticket lifecycle: one type for its states and the moves between them.

    issued ──feedback──▶ reported ──worker──▶ applied
                             └──── apply failed `max_apply_attempts` times ──▶ failed

A select issues a ticket; its feedback reports it once every problem has a result (or a
post says `final`; several posts may share the results, runs/feedback.py); the worker applies
it in the transaction that writes the new model version, or sets it aside as failed (a
dead letter) so it cannot stall its run. `applied` and `failed` are final. The states are
strings (a `StrEnum`), so they compare and store as the plain words the database and the
API use.
"""

from __future__ import annotations

from enum import StrEnum


class TicketState(StrEnum):
    ISSUED = "issued"
    REPORTED = "reported"
    APPLIED = "applied"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (TicketState.APPLIED, TicketState.FAILED)

    def can_become(self, other: TicketState) -> bool:
        """Whether the lifecycle allows the move self → other."""
        return other in _NEXT[self]


_NEXT: dict[TicketState, frozenset[TicketState]] = {
    TicketState.ISSUED: frozenset({TicketState.REPORTED}),
    TicketState.REPORTED: frozenset({TicketState.APPLIED, TicketState.FAILED}),
    TicketState.APPLIED: frozenset(),
    TicketState.FAILED: frozenset(),
}

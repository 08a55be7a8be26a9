"""The domain's refusals, one family for every layer below the web.

Code in `bank/`, `curation/`, `runs/` raises these and knows nothing of HTTP; the API
maps each kind to a status in one place (`api/errors.py`). Every error carries a message
for a person and `details` (JSON-able) for a program.
"""

from __future__ import annotations

from typing import Any


class CuratorError(ValueError):
    """A request the domain refuses; nothing was changed. Subclass by kind."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(CuratorError):
    """The request is well-formed but its content cannot be served (HTTP 422)."""


class Missing(CuratorError):
    """What the request names does not exist, or not where it says (HTTP 404)."""


class Expired(CuratorError):
    """What the request names existed but has expired (HTTP 410)."""


class Clash(CuratorError):
    """The request conflicts with what exists (HTTP 409)."""

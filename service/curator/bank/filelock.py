"""An exclusive lock on a file in a bank's directory, held across processes (flock)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(directory: Path, name: str) -> Iterator[None]:
    """Serialise appends to a bank's derived files between replicas and importers."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

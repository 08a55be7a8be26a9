"""Package hygiene: public names, version, and no heavy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import curator_client
from curator_client import AsyncClient, Client


def test_all_is_sorted_and_importable() -> None:
    names = curator_client.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(curator_client, name), name
    assert curator_client.__version__ == "0.1.0"


def test_import_pulls_in_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, curator_client; "
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_async_client_mirrors_client() -> None:
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public <= {n for n in dir(AsyncClient) if not n.startswith("_")}
    for name in public - {"run", "close"}:
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        sync_params = list(inspect.signature(getattr(Client, name)).parameters)
        async_params = list(inspect.signature(getattr(AsyncClient, name)).parameters)
        assert sync_params == async_params, name

"""The dashboard page and its assets, shipped inside the package (the machine is offline).

The HTML shell needs no token; it asks for the admin token, keeps it in the browser's
sessionStorage and sends it as a bearer header to the JSON endpoints it draws from.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def asset(name: str) -> tuple[bytes, str] | None:
    """(content, media type) of a named asset; None for anything not in ASSETS."""
    media = ASSETS.get(name)
    if media is None:
        return None
    return resources.files("curator.admin").joinpath("static", name).read_bytes(), media


REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"  # the bundle's "by Redocly" image


@functools.cache
def redoc_bundle() -> bytes:
    """fastapi-offline's ReDoc bundle with its one remote reference (the sidebar's Redocly
    logo, fetched from a CDN at page load) pointed at Curator's own icon: /redoc then
    loads nothing from outside the service."""
    import fastapi_offline

    bundle = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js")
    return bundle.read_bytes().replace(REDOC_LOGO, b"/admin/static/favicon.svg")

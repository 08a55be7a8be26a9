"""/docs and /redoc work on a cluster without internet: every asset is served by Curator."""

from __future__ import annotations

import re

import pytest

from tests.service.helpers import running_app

pytestmark = pytest.mark.anyio

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")


def _asset_urls(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_reference_only_local_assets_that_are_served(page, sqlite_settings):
    async with running_app(sqlite_settings) as (client, _):
        r = await client.get(page)
        assert r.status_code == 200
        assert "text/html" in r.headers["content-type"]
        urls = _asset_urls(r.text)
        assert any(u.endswith(".js") for u in urls), urls  # the page does load its UI
        assert "/openapi.json" in r.text
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), f"{page}: {url}"
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        assert "cdn" not in r.text.lower() and "googleapis" not in r.text


async def test_swagger_ui_renders_openapi_3_1(sqlite_settings):
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders only from 5.0 on."""
    async with running_app(sqlite_settings) as (client, _):
        assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
        html = (await client.get("/docs")).text
        js = next(u for u in _asset_urls(html) if u.endswith("swagger-ui-bundle.js"))
        bundle = (await client.get(js)).text
        major = re.search(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
        assert major and int(major.group(1)) >= 5, "Swagger UI < 5 shows a blank page for 3.1"


async def test_redoc_bundle_fetches_nothing_from_outside(sqlite_settings):
    """The stock ReDoc bundle loads the Redocly logo from cdn.redoc.ly at page load."""
    async with running_app(sqlite_settings) as (client, _):
        html = (await client.get("/redoc")).text
        js = next(u for u in _asset_urls(html) if u.endswith(".js"))
        bundle = (await client.get(js)).text
    assert len(bundle) > 500_000  # the real ReDoc
    remote = set(re.findall(r"""src:\s*["'](https?://[^"']+)""", bundle))
    assert not remote, remote
    assert "/admin/static/favicon.svg" in bundle

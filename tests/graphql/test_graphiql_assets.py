"""GraphiQL works offline: its page names no other host, and the app itself serves every script
and stylesheet the page loads, to a browser that has no token, with the digest the page checks."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, Mode
from aiaas.graphql.graphiql import ASSETS_DIR, ASSETS_PATH
from aiaas.portal import ASSETS as PORTAL_ASSETS
from aiaas.portal import BUNDLE_DIR as PORTAL_BUNDLE_DIR

PORTAL_ASSETS_DIR = PORTAL_BUNDLE_DIR / PORTAL_ASSETS
PAGE_URL = "http://aiaas.test/graphql"
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
}


class References(HTMLParser):
    """Every URL the page's elements name, with the integrity each one declares."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if url := named.get(attribute):
                self.urls[url] = named.get("integrity")


async def graphiql_page(client: httpx.AsyncClient) -> str:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def references(page: str) -> dict[str, str | None]:
    parser = References()
    parser.feed(page)
    return parser.urls


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_the_page_names_no_other_host(client: httpx.AsyncClient) -> None:
    page = await graphiql_page(client)
    urls = references(page)

    elsewhere = [
        url
        for url in urls
        if urlsplit(url).scheme != "data"
        and urlsplit(urljoin(PAGE_URL, url)).netloc != "aiaas.test"
    ]
    assert urls, "the page loads nothing: this test would prove nothing"
    assert elsewhere == []
    for cdn in ("unpkg.com", "jsdelivr", "cdnjs", "esm.sh"):
        assert cdn not in page


async def test_every_asset_the_page_loads_is_served_without_a_token(
    client: httpx.AsyncClient,
) -> None:
    # `client` sends no Authorization header, as a browser loading a <script> does not.
    assets = {
        url: integrity
        for url, integrity in references(await graphiql_page(client)).items()
        if urlsplit(url).scheme != "data"
    }

    kinds = {urlsplit(url).path.rsplit(".", 1)[-1] for url in assets}
    assert kinds == {"js", "css"}
    for url, integrity in assets.items():
        response = await client.get(urljoin(PAGE_URL, url))
        assert response.status_code == 200, url
        content_type = response.headers["content-type"].split(";")[0]
        assert content_type in CONTENT_TYPES["." + url.rsplit(".", 1)[-1]], (url, content_type)
        assert integrity == sri(response.content), f"{url}: the page checks another digest"


async def test_each_shipped_script_and_stylesheet_is_loaded_by_the_page(
    client: httpx.AsyncClient,
) -> None:
    # A file nobody loads is weight in the package for nothing.
    loaded = {urlsplit(url).path for url in references(await graphiql_page(client))}
    shipped = {
        f"{ASSETS_PATH}/{path.name}"
        for path in ASSETS_DIR.iterdir()
        if path.suffix in CONTENT_TYPES
    }

    assert shipped == loaded & shipped
    assert shipped


def test_each_bundled_package_has_its_license() -> None:
    licenses = {path.name for path in ASSETS_DIR.glob("LICENSE.*")}

    assert licenses == {"LICENSE.graphiql", "LICENSE.react", "LICENSE.graphiql-explorer"}
    for name in licenses:
        assert "MIT License" in (ASSETS_DIR / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
async def production_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    platform = create_platform(config.model_copy(update={"mode": Mode.PRODUCTION}))
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield client
    finally:
        await platform.stop()


async def test_production_serves_no_graphiql_asset(
    production_client: httpx.AsyncClient, admin_token: str
) -> None:
    # GraphiQL is off in production; so are its files, which are public where they are served.
    url = f"{ASSETS_PATH}/graphiql.min.js"

    anonymous = await production_client.get(url)
    with_token = await production_client.get(
        url, headers={"authorization": f"Bearer {admin_token}"}
    )

    assert anonymous.status_code == 401
    assert with_token.status_code == 404


def test_the_shipped_scripts_evaluate_no_text_as_code() -> None:
    """GraphiQL's bundles and the portal's call `RegExp.prototype.exec` (pattern matching on a
    string) but never `eval`; the one `Function` constructor is webpack's way to find the global
    object where `globalThis` is missing, a branch no browser GraphiQL supports takes."""
    scripts = sorted(ASSETS_DIR.glob("*.js")) + sorted(PORTAL_ASSETS_DIR.glob("*.js"))
    assert any(script.is_relative_to(PORTAL_ASSETS_DIR) for script in scripts)
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w$.])eval\s*\(", text), script.name
        constructed = re.findall(r"new Function\(([^)]*)\)", text)
        assert constructed in ([], ["'return this'"]), (script.name, constructed)


PORTAL_SOURCE_DIR = Path(__file__).resolve().parents[2] / "portal" / "src"
TEXT_AS_CODE_OR_MARKUP = re.compile(
    r"(?<![\w$.])eval\s*\(|\bFunction\s*\(|set(?:Timeout|Interval)\s*\(\s*['\"`]"
    r"|dangerouslySetInnerHTML|\binnerHTML\b|outerHTML|insertAdjacentHTML|document\.write"
)


def test_the_portals_own_code_runs_no_text_as_code_and_writes_no_markup() -> None:
    """The bundle's JSON.parse calls (urql's and graphql-ws's, and ours) read data, not code.
    Its one `innerHTML` path and MSApp's `execUnsafeLocalFunction` are React DOM's, reached only
    through `dangerouslySetInnerHTML` or on Windows 8 HTML apps: this keeps our own code off
    both, on top of a CSP without 'unsafe-eval'."""
    sources = sorted(PORTAL_SOURCE_DIR.rglob("*.ts")) + sorted(PORTAL_SOURCE_DIR.rglob("*.tsx"))
    assert sources
    offending = [
        f"{source.relative_to(PORTAL_SOURCE_DIR)}: {found.group()}"
        for source in sources
        for found in TEXT_AS_CODE_OR_MARKUP.finditer(source.read_text(encoding="utf-8"))
    ]
    assert not offending, offending


async def test_the_page_runs_only_its_own_scripts_and_no_text_as_code(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/graphql", headers={"accept": "text/html"})
    policy = answer.headers["content-security-policy"]
    script_src = next(
        part.split()[1:] for part in policy.split(";") if part.split()[0] == "script-src"
    )
    # No 'unsafe-eval': the browser refuses eval and new Function(text) whatever a bundle does.
    assert "'unsafe-eval'" not in script_src and "'unsafe-inline'" not in script_src
    inline = re.findall(r"<script>(.*?)</script>", answer.text, flags=re.DOTALL)
    assert inline, "the page boots GraphiQL from an inline script"
    allowed = {"'self'"} | {
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in inline
    }
    assert set(script_src) == allowed
    assert "object-src 'none'" in policy

"""The web portal at `/`: its shell and files are public, carry a strict CSP and the right cache
and type headers, nothing outside the bundle is reachable, and the API stays authenticated."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, ServerRole
from aiaas.core.platform import Platform
from aiaas.portal import CONTENT_SECURITY_POLICY, IMMUTABLE, NOT_BUILT

INDEX_HTML = (
    b'<!doctype html><html><head><script type="module" src="/assets/app-abc123.js"></script>'
    b"</head><body><div id=root></div></body></html>"
)
APP_JS = b"console.log('portal');\n"
SECRET = b"not part of the bundle"

EXPECTED_TYPES = {
    "app-abc123.js": "text/javascript; charset=utf-8",
    "style-abc123.css": "text/css; charset=utf-8",
    "logo-abc123.svg": "image/svg+xml",
    "icon-abc123.png": "image/png",
    "font-abc123.woff2": "font/woff2",
    "data-abc123.json": "application/json",
    "app-abc123.js.map": "application/json",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle as Vite lays one out, beside a secret file and links that lead out of it."""
    base = tmp_path_factory.mktemp("portal")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "bundle"
    assets = root / "assets"
    assets.mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX_HTML)
    (root / "favicon.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    for name in EXPECTED_TYPES:
        (assets / name).write_bytes(APP_JS if name == "app-abc123.js" else b"{}")
    os.symlink(base / "secret.txt", assets / "leak.js")
    os.symlink(base, assets / "outside")
    return root


@pytest.fixture(scope="module")
def portal_app(platform: Platform, bundle: Path) -> Starlette:
    return create_app(platform=platform, portal_dir=bundle)


@pytest.fixture
async def browser(portal_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=portal_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        yield client


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", ["/", "/projects/fraud/jobs/42", "/index.html", "/login?next=/"])
async def test_the_shell_answers_every_page_path_without_credentials(
    browser: httpx.AsyncClient, path: str
) -> None:
    response = await browser.get(path)

    assert response.status_code == 200
    assert response.content == INDEX_HTML
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert_security_headers(response)


async def test_a_hashed_asset_is_served_with_its_type_and_cached_for_good(
    browser: httpx.AsyncClient,
) -> None:
    response = await browser.get("/assets/app-abc123.js")

    assert response.status_code == 200
    assert response.content == APP_JS
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == IMMUTABLE
    assert_security_headers(response)


@pytest.mark.parametrize(("name", "media_type"), EXPECTED_TYPES.items())
async def test_each_kind_of_asset_has_its_content_type(
    browser: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await browser.get(f"/assets/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type


async def test_a_file_at_the_bundle_root_is_served_but_revalidated(
    browser: httpx.AsyncClient,
) -> None:
    response = await browser.get("/favicon.svg")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "no-cache"


async def test_head_answers_the_headers_without_the_body(browser: httpx.AsyncClient) -> None:
    page = await browser.head("/")
    asset = await browser.head("/assets/app-abc123.js")

    assert page.status_code == 200
    assert page.content == b""
    assert page.headers["content-length"] == str(len(INDEX_HTML))
    assert_security_headers(page)
    assert asset.status_code == 200
    assert asset.content == b""
    assert asset.headers["content-length"] == str(len(APP_JS))
    assert asset.headers["cache-control"] == IMMUTABLE


@pytest.mark.parametrize(
    ("range_header", "status"),
    [("bytes=0-6", 206), ("bytes=999-1000", 416), ("bytes=x", 400), ("items=0-1", 400)],
)
async def test_a_range_request_and_its_refusals_carry_the_security_headers(
    browser: httpx.AsyncClient, range_header: str, status: int
) -> None:
    # A refused range is answered by Starlette's FileResponse itself, not by the portal's code.
    response = await browser.get("/assets/app-abc123.js", headers={"range": range_header})

    assert response.status_code == status
    assert_security_headers(response)


@pytest.mark.parametrize(
    "path",
    [
        "/assets/missing-abc123.js",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/assets/..%5c..%5csecret.txt",
        "/assets/..\\..\\secret.txt",
        "/assets//etc/passwd",
        "/assets/%2Fetc%2Fpasswd",
        "/assets/leak.js",
        "/assets/outside/secret.txt",
        "/assets/outside/bundle/index.html",
        "/assets/",
        "/assets",
    ],
)
async def test_nothing_outside_the_bundle_nor_a_listing_is_served(
    browser: httpx.AsyncClient, path: str
) -> None:
    # Sent as written: httpx would otherwise resolve the dots before they leave.
    response = await browser.send(httpx.Request("GET", "http://aiaas.test" + path))
    if path.startswith("/assets/../"):
        # A client (and httpx's URL model) may fold the dots before sending: then the request
        # is for /secret.txt, an app path, which gets the shell and never the file.
        assert SECRET not in response.content
        return

    assert response.status_code == 404, response.text
    assert SECRET not in response.content
    assert b"app-abc123" not in response.content  # no listing of the directory
    assert_security_headers(response)


async def test_a_dotted_path_outside_assets_gets_the_shell_never_a_file(
    browser: httpx.AsyncClient,
) -> None:
    response = await browser.get("/%2e%2e/secret.txt")

    assert response.status_code == 200
    assert response.content == INDEX_HTML


@pytest.mark.parametrize(
    "path",
    ["/v1/anything", "/v1/session/other", "/v2/models", "/v2", "/metrics", "/graphql/x"],
)
async def test_api_paths_are_not_the_portal_and_stay_authenticated(
    browser: httpx.AsyncClient, path: str
) -> None:
    response = await browser.get(path)

    assert response.status_code == 401
    assert INDEX_HTML not in response.content


async def test_an_unknown_api_path_with_credentials_is_a_404_not_the_shell(
    browser: httpx.AsyncClient, admin_token: str
) -> None:
    response = await browser.get(
        "/v1/no-such-route", headers={"authorization": f"Bearer {admin_token}"}
    )

    assert response.status_code == 404
    assert INDEX_HTML not in response.content


async def test_under_a_root_path_the_api_stays_authenticated(
    portal_app: Starlette, admin_token: str
) -> None:
    # Behind a proxy that adds a prefix, the router matches /api/v1/... as /v1/...: that the
    # path does not start with /v1 must not make it the portal's, and public.
    transport = httpx.ASGITransport(app=portal_app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        path = "/api/v1/projects/none/datasets/none/versions/1/data"
        anonymous = await client.get(path)
        known = await client.get(path, headers={"authorization": f"Bearer {admin_token}"})

    assert anonymous.status_code == 401
    assert known.status_code == 404, known.text  # the dataset route's answer, not the shell


async def test_a_get_route_outside_the_api_prefixes_stays_authenticated(
    platform: Platform, bundle: Path, admin_token: str
) -> None:
    # The portal answers only what no other route does; a route added later at a path of its
    # own (a plugin's, say) must not become public for being outside `API_PREFIXES`.
    async def private(request: Request) -> Response:
        return PlainTextResponse("private")

    app = create_app(platform=platform, portal_dir=bundle)
    app.router.routes.insert(0, Route("/reports", private, methods=["GET"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        anonymous = await client.get("/reports")
        known = await client.get("/reports", headers={"authorization": f"Bearer {admin_token}"})

    assert anonymous.status_code == 401
    assert known.text == "private"


async def test_a_post_to_a_page_path_is_not_public(browser: httpx.AsyncClient) -> None:
    response = await browser.post("/projects", content=b"x")

    assert response.status_code == 401


async def test_graphql_and_the_probes_are_answered_as_before(browser: httpx.AsyncClient) -> None:
    health = await browser.get("/healthz")
    graphql = await browser.post("/graphql", json={"query": "{ health { status } }"})

    assert health.json() == {"status": "ok"}
    assert graphql.status_code == 200
    assert "content-security-policy" not in health.headers


async def test_without_a_built_bundle_the_pages_say_how_to_build_it(
    platform: Platform, tmp_path: Path
) -> None:
    app = create_app(platform=platform, portal_dir=tmp_path / "never-built")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        page = await client.get("/projects")
        asset = await client.get("/assets/app-abc123.js")

    assert page.status_code == 503
    assert page.text == NOT_BUILT
    assert_security_headers(page)
    assert "cd portal && npm ci && npm run build" in page.text
    assert asset.status_code == 404


async def test_an_inference_server_serves_no_portal(
    config: Config, admin_token: str, bundle: Path
) -> None:
    platform = create_platform(config.model_copy(update={"role": ServerRole.INFERENCE}))
    await platform.start()
    try:
        app = create_app(platform=platform, portal_dir=bundle)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            anonymous = await client.get("/")
            known = await client.get("/", headers={"authorization": f"Bearer {admin_token}"})
            session = await client.post("/v1/session", json={"username": "a", "password": "b"})
    finally:
        await platform.stop()

    assert anonymous.status_code == 401
    assert known.status_code == 404
    assert INDEX_HTML not in known.content
    assert session.status_code == 401


def test_the_package_build_ships_the_bundle() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()

    assert '"src/aiaas/portal_bundle/**"' in pyproject

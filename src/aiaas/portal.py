"""The web portal's files, served at `/` by the API (roles `api` and `all`).

The portal is a single-page app built by Vite from `portal/` into `portal_bundle/` inside this
package (`cd portal && npm ci && npm run build`), so that a server runs it without Node.js. What
is served:

- `/assets/<file>`: a file of the bundle's `assets/`. Vite names them by content hash, so they
  are cached for a year (`immutable`).
- any other file of the bundle at its path (what Vite copies from `portal/public/`, such as a
  favicon), `no-cache`.
- every other GET or HEAD path that is not the API's (`API_PREFIXES`, GraphiQL's assets under
  `/graphql`): the bundle's `index.html`, `no-cache`, so that a reload of a deep link such as
  `/projects/fraud/jobs` opens the app, which routes it.

The files served are those listed when the server starts, inside the bundle directory: a
request's path is only ever looked up in that list, never joined to a directory, so no `..`,
encoded or not, no backslash and no absolute path reaches the filesystem, nothing is listed, and
a symbolic link that leads out of the bundle is not served. A path under `/assets/` that is no
file of the bundle is a 404, not the app.

These answers are public: the shell holds no data (the app then calls the API, which
authenticates every call). Each carries a strict Content-Security-Policy: scripts, styles, fonts
and connections only from this origin, so no inline script, no `eval` and no other site's code.
Without a built bundle (a checkout that never ran the build), the pages answer 503 with how to
build it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

BUNDLE_DIR = Path(__file__).parent / "portal_bundle"
INDEX = "index.html"
ASSETS = "assets"
API_PREFIXES = ("/v1", "/v2", "/graphql", "/metrics", "/healthz", "/readyz")
"""Paths (and everything under them) that are the API's, never the portal's."""
PAGE_METHODS = ("GET", "HEAD")
NOT_BUILT = (
    "The portal bundle is not built: run `cd portal && npm ci && npm run build`, "
    "then restart the server. The API itself is unaffected."
)

# `connect-src 'self'` covers the GraphQL WebSocket too: browsers match ws(s) to the page's
# http(s) origin under CSP Level 3. `img-src` allows data: and blob: for the charts' exported
# images and the generated icons; nothing else leaves the page's own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# Explicit rather than the `mimetypes` module's, which reads the machine's /etc/mime.types and
# so answers differently from one host to the next (`.js` as `application/javascript` or
# `text/javascript`; `.woff2` unknown on some).
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def media_type_of(name: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(name).suffix.lower(), DEFAULT_MEDIA_TYPE)


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def _bundle_files(root: Path) -> dict[str, Path]:
    """Every regular file inside `root`, by its URL path (`/assets/app-1a2b.js`). A link is
    listed only when what it leads to is a file inside `root` too."""
    files: dict[str, Path] = {}
    if not root.is_dir():
        return files
    for directory, _, names in os.walk(root):  # does not descend into linked directories
        for name in names:
            path = Path(directory) / name
            target = path.resolve()
            if target.is_file() and target.is_relative_to(root):
                files["/" + path.relative_to(root).as_posix()] = target
    return files


@dataclass(frozen=True)
class Portal:
    """The bundle as found when the server started."""

    root: Path
    files: dict[str, Path]
    index_html: bytes | None

    @classmethod
    def load(cls, bundle_dir: Path | None = None) -> Portal:
        root = (bundle_dir or BUNDLE_DIR).resolve()
        files = _bundle_files(root)
        index = files.get("/" + INDEX)
        if index is None:
            logger.warning("the portal is not served at /: %s", NOT_BUILT)
        return cls(root=root, files=files, index_html=index.read_bytes() if index else None)

    def serves(self, scope: Scope) -> bool:
        """Whether the request is the portal's: a GET or HEAD of a path not the API's."""
        return (
            scope["type"] == "http"
            and scope["method"] in PAGE_METHODS
            and not is_api_path(scope["path"])
        )

    async def answer(self, request: Request) -> Response:
        path: str = request.scope["path"]
        found = self.files.get(path)
        if found is not None and path != "/" + INDEX:
            return self._file(found, path)
        if path == "/" + ASSETS or path.startswith(f"/{ASSETS}/"):
            return self._plain("Not Found", 404)
        return self._index(request)

    def _file(self, path: Path, url_path: str) -> Response:
        # Listed at start; checked again in case the bundle changed under a running server.
        if not path.resolve().is_relative_to(self.root) or not path.is_file():
            return self._plain("Not Found", 404)
        immutable = url_path.startswith(f"/{ASSETS}/")
        return FileResponse(
            path,
            media_type=media_type_of(path.name),
            headers={"Cache-Control": IMMUTABLE if immutable else REVALIDATE},
        )

    def _index(self, request: Request) -> Response:
        if self.index_html is None:
            return self._plain(NOT_BUILT, 503)
        headers = {
            "Cache-Control": REVALIDATE,
            "Content-Length": str(len(self.index_html)),
        }
        body = b"" if request.method == "HEAD" else self.index_html
        return Response(body, media_type=MEDIA_TYPES[".html"], headers=headers)

    def _plain(self, text: str, status_code: int) -> Response:
        return PlainTextResponse(
            text, status_code=status_code, headers={"Cache-Control": "no-store"}
        )


def portal_answers(scope: Scope) -> bool:
    """Whether the app's router hands this request to the portal: Starlette's router takes the
    first route that matches in full, and that is the `PortalRoute`. A GET is public only then,
    so a route outside `API_PREFIXES` (one added later), or an API route reached under a root
    path (`/api/v1/...` behind a proxy), matches first and stays authenticated."""
    for route in getattr(scope.get("app"), "routes", ()):
        if route.matches(scope)[0] is Match.FULL:
            return isinstance(route, PortalRoute)
    return False


class PortalRoute(Route):
    """Matches the portal's requests only: any other request goes on to be answered as if the
    route were not there (a 404, or a 405 for a known path)."""

    def __init__(self, portal: Portal) -> None:
        super().__init__("/{path:path}", portal.answer, methods=list(PAGE_METHODS))
        self.portal = portal

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not self.portal.serves(scope):
            return Match.NONE, {}
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Added to the answer as it leaves rather than by each response: Starlette's
        # FileResponse answers a malformed or unsatisfiable Range (400, 416) with a response
        # of its own.
        async def send_with_security_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await super().handle(scope, receive, send_with_security_headers)

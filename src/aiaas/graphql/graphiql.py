"""GraphiQL, served from the package in dev mode: its page, and the scripts and styles the page
loads from `ASSETS_PATH` rather than from a CDN, so that it works offline.

The assets are the npm files strawberry's own page loads from unpkg.com, byte for byte; the page
checks them by their sha384 (`static/graphiql/SOURCES.txt` says where each comes from)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from aiaas.requests import GRAPHQL_PATH

STATIC = Path(__file__).parent / "static"
ASSETS_DIR = STATIC / "graphiql"
ASSETS_PATH = f"{GRAPHQL_PATH}/static/graphiql"
_ASSETS_PLACEHOLDER = "__ASSETS__"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", flags=re.DOTALL)


@cache
def graphiql_page() -> str:
    """The GraphiQL page, its asset URLs pointing at `ASSETS_PATH`."""
    template = (STATIC / "graphiql.html").read_text(encoding="utf-8")
    return template.replace(_ASSETS_PLACEHOLDER, ASSETS_PATH)


@cache
def graphiql_policy() -> str:
    """The page's Content-Security-Policy. Scripts come from this origin (the assets, checked by
    their integrity attributes) or are the page's own inline scripts, by their sha256; and with
    no 'unsafe-eval', the browser itself refuses to run any text as code (`eval`, `new
    Function`, a string given to `setTimeout`), whatever a bundle does."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(graphiql_page())
    )
    return f"script-src 'self' {hashes}; object-src 'none'; base-uri 'none'"


def asset_routes() -> list[BaseRoute]:
    return [Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR))]


def asset_paths() -> set[str]:
    """Each asset's URL path. They are public: a browser loads them without the API token, and
    they are the same files for everyone."""
    return {f"{ASSETS_PATH}/{path.name}" for path in ASSETS_DIR.iterdir() if path.is_file()}

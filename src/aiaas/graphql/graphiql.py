"""GraphiQL, served from the package in dev mode: its page, and the scripts and styles the page
loads from `ASSETS_PATH` rather than from a CDN, so that it works offline.

The assets are the npm files strawberry's own page loads from unpkg.com, byte for byte; the page
checks them by their sha384 (`static/graphiql/SOURCES.txt` says where each comes from)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from aiaas.requests import GRAPHQL_PATH

STATIC = Path(__file__).parent / "static"
ASSETS_DIR = STATIC / "graphiql"
ASSETS_PATH = f"{GRAPHQL_PATH}/static/graphiql"
_ASSETS_PLACEHOLDER = "__ASSETS__"


@cache
def graphiql_page() -> str:
    """The GraphiQL page, its asset URLs pointing at `ASSETS_PATH`."""
    template = (STATIC / "graphiql.html").read_text(encoding="utf-8")
    return template.replace(_ASSETS_PLACEHOLDER, ASSETS_PATH)


def asset_routes() -> list[BaseRoute]:
    return [Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR))]


def asset_paths() -> set[str]:
    """Each asset's URL path. They are public: a browser loads them without the API token, and
    they are the same files for everyone."""
    return {f"{ASSETS_PATH}/{path.name}" for path in ASSETS_DIR.iterdir() if path.is_file()}

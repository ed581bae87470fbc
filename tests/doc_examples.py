"""The code blocks of the tutorial and the guides, read from their pages and run the way a reader
runs them: in order, one page at a time, against a real `aiaas dev`.

What each fenced block is, by its language:
- `python`: run in one namespace per page, as cells of a notebook are.
- `sh`: run by bash (`set -euo pipefail`) in the page's own directory. The variables a block
  exports stay set for the page's next blocks, as in one terminal, and the Python blocks after it
  see them, as a Python started from that terminal would.
- `graphql`: sent to `/graphql` with the page's `AIAAS_TOKEN`; it must answer no error.
- `toml`: a settings file; it must parse and name only settings that exist.
- `text`: what a command printed. It is output, not code, and is not run.

Two things stand in for the reader's machine. The server runs on a free port, so the pages'
`http://127.0.0.1:8000` names it. And a block that is just `aiaas dev` is the server itself, which
the test started the same way (the default data dir, under the test's own home) before the page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

DOCS_URL = "http://127.0.0.1:8000"
"""The server the pages speak of."""
SERVER_BLOCK = "aiaas dev"
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```", re.M | re.S
)
RUN = frozenset({"python", "sh", "graphql", "toml"})
OUTPUT = frozenset({"text"})
SH_TIMEOUT_S = 900


@dataclass(frozen=True)
class DocsServer:
    """The `aiaas dev` the pages run against, and the home its data dir is under."""

    base_url: str
    home: Path


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        indent = match.group("indent")
        code = "".join(
            line.removeprefix(indent) for line in match.group("code").splitlines(keepends=True)
        )
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, match.group("language"), code))
    return found


@dataclass
class Reader:
    """One reader working through one page: a directory, a terminal's exported variables, and a
    Python namespace."""

    base_url: str
    home: Path
    work: Path
    variables: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__main__"})

    def __post_init__(self) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.variables = {
            name: value for name, value in os.environ.items() if not name.startswith("AIAAS_")
        }
        self.variables.update(
            HOME=str(self.home),
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            COLUMNS="120",
        )
        self.variables.pop("XDG_CONFIG_HOME", None)
        self.variables.pop("XDG_DATA_HOME", None)

    def run(self, block: Block) -> None:
        code = block.code.replace(DOCS_URL, self.base_url)
        if block.language == "python":
            self._python(block, code)
        elif block.language == "sh":
            if code.strip() == SERVER_BLOCK:
                return  # the server the test started, as the page says to start it
            self._sh(block, code)
        elif block.language == "graphql":
            self._graphql(block, code)
        elif block.language == "toml":
            self._toml(block, code)
        elif block.language not in OUTPUT:
            raise AssertionError(
                f"{block.where}: a ```{block.language} block, which no test can run; use one of "
                f"{sorted(RUN)}, or ```text for output"
            )

    def close(self) -> None:
        """What a reader's session leaves open when the page ends: the SDK clients the page
        made (a notebook keeps them until its kernel stops)."""
        from aiaas.client import AsyncClient, Client

        for value in self.namespace.values():
            if isinstance(value, Client):
                value.close()
            elif isinstance(value, AsyncClient):
                raise AssertionError("a page's AsyncClient must be closed by the page")

    def _python(self, block: Block, code: str) -> None:
        saved = dict(os.environ)
        cwd = Path.cwd()
        os.environ.clear()
        os.environ.update(self.variables)
        os.chdir(self.work)
        try:
            # Blank lines ahead keep the traceback's line numbers those of the page.
            exec(compile("\n" * block.line + code, str(block.page), "exec"), self.namespace)
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)

    def _sh(self, block: Block, code: str) -> None:
        state = self.work / ".exported"
        script = f"set -euo pipefail\n{code}\nenv -0 > {state}\n"
        finished = subprocess.run(
            ["bash", "-c", script],
            cwd=self.work,
            env=self.variables,
            capture_output=True,
            text=True,
            timeout=SH_TIMEOUT_S,
            check=False,
        )
        sys.stdout.write(finished.stdout)
        sys.stderr.write(finished.stderr)
        assert finished.returncode == 0, (
            f"{block.where}: exited {finished.returncode}\n{code}\n--- stdout\n"
            f"{finished.stdout}\n--- stderr\n{finished.stderr}"
        )
        pairs = state.read_text(encoding="utf-8").split("\0")
        self.variables = dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    def _graphql(self, block: Block, code: str) -> None:
        token = self.variables.get("AIAAS_TOKEN")
        assert token, f"{block.where}: no AIAAS_TOKEN exported before this GraphQL block"
        answer = httpx.post(
            f"{self.base_url}/graphql",
            json={"query": code},
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        )
        body = answer.json()
        assert answer.status_code == 200 and not body.get("errors"), (
            f"{block.where}: {answer.status_code} {json.dumps(body, indent=2)}"
        )
        # A mutation's refusal is a member of its result union, not a GraphQL error.
        refusals = [name for name in _typenames(body["data"]) if name.endswith("Error")]
        assert not refusals, f"{block.where}: answered {refusals}: {json.dumps(body, indent=2)}"
        print(json.dumps(body["data"], indent=2))

    def _toml(self, block: Block, code: str) -> None:
        from aiaas.core.config import Config

        settings = tomllib.loads(code)
        unknown = sorted(set(settings) - set(Config.model_fields))
        assert not unknown, f"{block.where}: no such settings: {unknown}"


def _typenames(value: Any) -> list[str]:
    """Every `__typename` in a GraphQL answer, however deep."""
    if isinstance(value, dict):
        own = [value["__typename"]] if isinstance(value.get("__typename"), str) else []
        return own + [name for item in value.values() for name in _typenames(item)]
    if isinstance(value, list):
        return [name for item in value for name in _typenames(item)]
    return []

"""The log of a real server (`support.running_server` writes it to a file), read for problems:
a traceback, an exception, an ERROR line. Uvicorn's access lines are left out, since they quote
the request's path, which may hold anything."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROBLEM = re.compile(r"Traceback|Exception|\bERROR\b")
ACCESS_LINE = re.compile(r'^INFO: +[0-9.]+:[0-9]+ - "')


@dataclass
class ServerLog:
    path: Path

    def mark(self) -> int:
        """Where the log ends now: what `problems(since=...)` takes."""
        return self.path.stat().st_size

    def text(self, start: int = 0, end: int | None = None) -> str:
        with self.path.open("rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(end - start)
        return data.decode("utf-8", "replace")

    def problems(self, since: int = 0) -> list[str]:
        """The lines since `since` that tell of a problem."""
        lines = self.text(since).splitlines()
        return [line for line in lines if PROBLEM.search(line) and not ACCESS_LINE.match(line)]

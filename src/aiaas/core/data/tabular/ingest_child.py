"""The ingest process: reads uploads into normalized Parquet, one after another, under a ceiling
on its address space.

Run as `python -m aiaas.core.data.tabular.ingest_child CEILING_BYTES` by
`aiaas.core.data.ingest_processes`, which writes one request per line on its standard input (a
JSON object: source, work_dir, options, limits, and whether the source is still arriving:
`aiaas.core.data.tabular.arriving`) and reads one answer per line (JSON) from its
standard output, after a first `{"ready": true}` once its ceiling is set: `{"table": {...}}`,
`{"refused": {"message", "field_errors"}}`, `{"out_of_memory": true}` (after which the process
ends: its heap is not worth reusing) or `{"crashed": "..."}` for a bug, whose traceback goes to
standard error. It ends at the end of its
input, so it never outlives the process that started it.

JSON, not pickle, crosses the pipe: the request is paths and plain options, the answer the table's
profile.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from aiaas.core.data.tabular.ingest import normalize_upload
from aiaas.core.data.tabular.limits import TableLimits
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.errors import InputError


def answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        table = normalize_upload(
            Path(request["source"]),
            Path(request["work_dir"]),
            ReadOptions(**request["options"]),
            TableLimits.from_json(request["limits"]),
            arriving=request.get("arriving", False),
        )
    except InputError as exc:
        return {"refused": {"message": exc.message, "field_errors": exc.field_errors}}
    except MemoryError:
        return {"out_of_memory": True}
    except Exception as exc:  # a bug: told to the parent, its traceback logged here
        traceback.print_exc(file=sys.stderr)
        return {"crashed": f"{type(exc).__name__}: {exc}"}
    return {"table": {**asdict(table), "path": str(table.path)}}


def serve(requests: IO[str], answers: IO[str]) -> None:
    for line in requests:
        reply = answer(json.loads(line))
        answers.write(json.dumps(reply, allow_nan=False) + "\n")
        answers.flush()
        if "table" not in reply and "refused" not in reply:
            return


ARROW_THREADS = 4
"""Arrow's pool grows with the machine's cores, and each thread's stack and allocator arena
count against the ceiling: a 48-core host would spend it on threads an upload cannot use."""


def main() -> None:
    # The whole address space, not only the heap: Arrow allocates with mmap as well, and a
    # ceiling it could step around bounds nothing. A lower limit the process was started under
    # (systemd's LimitAS=, ulimit -v) cannot be raised, and stays.
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = int(sys.argv[1])
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    pa.set_cpu_count(min(os.cpu_count() or 1, ARROW_THREADS))
    # The parent stops this process (by closing its input); a Ctrl-C at a terminal reaches the
    # whole process group and must not print a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers have the real standard output to themselves; anything a library prints goes to
    # standard error instead of corrupting them.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()

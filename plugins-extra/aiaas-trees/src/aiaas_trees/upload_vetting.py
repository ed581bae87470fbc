"""Uploaded ONNX files are vetted in a child process, under a ceiling on its memory and a time
limit, never in the process that received them.

Parsing a hostile protobuf, ONNX's checker, and ONNX Runtime's graph loader and optimizer all
run on the uploader's bytes, and can take several times the file's size, or far more for a graph
built to expand (a 200-byte graph can ask for 14 GB on its first run). A thread of the API
process could be neither bounded nor stopped; a child is both: its address space is capped
(`RLIMIT_AS`), it is killed past `VETTING_TIMEOUT_S`, and its environment holds nothing of
aiaas's settings. At most `MAX_VETTING_CHILDREN` run at once; other uploads wait their turn.

Run as `python -m aiaas_trees.upload_vetting CEILING_BYTES`, the child reads one JSON request on
its standard input (`source`, `output`, `declared`), writes the bundle to `output` and answers
one JSON line: `{"signature": ...}`, `{"refused": message, "mismatch": bool}`,
`{"out_of_memory": true}` or `{"crashed": message}`. JSON crosses the pipe, never pickle.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from aiaas.core.runtimes import SignatureMismatchError, UploadedModel
from aiaas.core.signatures import ModelSignature

VETTING_TIMEOUT_S = 120.0
MAX_VETTING_CHILDREN = 2
BASE_CEILING_BYTES = 2 << 30
"""Address space for Python, onnx and ONNX Runtime themselves: about 0.9 GiB after a small
graph's session, with room for the runtime's thread stacks."""
CEILING_PER_FILE_BYTE = 6
"""Parsed model, checked copy, written bytes and the runtime's own copy, with room to spare."""
INHERITED_VARIABLES = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
CHILD_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}

_children = threading.BoundedSemaphore(MAX_VETTING_CHILDREN)


class VettingCrashError(RuntimeError):
    """The vetting process failed for a reason that is no fault of the file."""


def vet_in_child(source: Path, declared: ModelSignature | None) -> UploadedModel:
    """`uploads.bundle_uploaded_graph` of the file at `source`, run in a child process.
    Blocking: called in a thread."""
    from aiaas_trees.uploads import UploadRefusedError

    ceiling = BASE_CEILING_BYTES + CEILING_PER_FILE_BYTE * source.stat().st_size
    with _children, tempfile.TemporaryDirectory(prefix="aiaas-onnx-") as work:
        output = Path(work) / "bundle.zip"
        request = {
            "source": str(source),
            "output": str(output),
            "declared": declared.as_json() if declared is not None else None,
        }
        try:
            finished = subprocess.run(
                [sys.executable, "-m", __name__, str(ceiling)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=VETTING_TIMEOUT_S,
                env={
                    **{
                        name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ
                    },
                    **CHILD_ENVIRONMENT,
                },
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UploadRefusedError(
                f"vetting the graph took longer than {VETTING_TIMEOUT_S:g} s"
            ) from None
        answer = _answer(finished)
        if "signature" in answer:
            return UploadedModel(
                bundle=output.read_bytes(),
                signature=ModelSignature.from_json(answer["signature"]),
            )
        if "refused" in answer:
            error = SignatureMismatchError if answer.get("mismatch") else UploadRefusedError
            raise error(answer["refused"])
        if answer.get("out_of_memory") or finished.returncode < 0:
            raise UploadRefusedError(
                f"vetting the graph took more memory than its limit of {ceiling} bytes"
            )
        raise VettingCrashError(f"the vetting process failed: {answer.get('crashed')}")


def _answer(finished: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = finished.stdout.strip().splitlines()
    if not lines:
        return {"crashed": finished.stderr.strip()[-500:] or f"exit {finished.returncode}"}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def _vet(request: dict[str, Any]) -> dict[str, Any]:
    from aiaas_trees.uploads import bundle_uploaded_graph

    declared = request["declared"]
    try:
        uploaded = bundle_uploaded_graph(
            Path(request["source"]).read_bytes(),
            ModelSignature.from_json(declared) if declared is not None else None,
        )
    except MemoryError:
        return {"out_of_memory": True}
    except ValueError as exc:
        return {"refused": str(exc), "mismatch": isinstance(exc, SignatureMismatchError)}
    Path(request["output"]).write_bytes(uploaded.bundle)
    return {"signature": uploaded.signature.as_json()}


def main() -> None:
    ceiling = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    try:
        answer = _vet(json.loads(sys.stdin.read()))
    except Exception as exc:  # a bug: told to the parent, its traceback on standard error
        traceback.print_exc(file=sys.stderr)
        answer = {"crashed": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()

"""Uploads are read in child processes, each under a ceiling on its memory.

Reading a file can take memory no check made before it can foresee (a Parquet page may decode
to far more than its footer says), and a thread of the API process cannot be bounded nor stopped.
A child process can be both: its address space is capped (`RLIMIT_AS`), so a file past the
ceiling ends in a typed refusal while the API keeps its memory; and when the upload's caller goes
away, the child is killed and its work stops with it.

Starting Python and Arrow costs about half a second, so children are kept and reused: at most
`ingest_processes` at a time, the rest of the uploads waiting for one. A child that ran out of
memory, crashed or was interrupted is not reused. A child parses hostile files, so it gets no
secret: its environment holds what Python needs to start and nothing of aiaas's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiaas.core.data.tabular.limits import TableLimits
from aiaas.core.data.tabular.normalized import NormalizedTable
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.errors import InputError
from aiaas.core.platform import ProcessService

if TYPE_CHECKING:
    from aiaas.core.config import Config

log = logging.getLogger(__name__)

ANSWER_BYTES = 256 << 20
"""The longest answer line read from a child: a profile of the widest table allowed."""
STOP_GRACE_S = 5.0
CHILD_ENVIRONMENT = {
    "ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
    "JE_ARROW_MALLOC_CONF": "retain:false,narenas:2",
    "MALLOC_ARENA_MAX": "2",
    "OPENBLAS_NUM_THREADS": "1",
}
"""The ceiling counts address space, not resident memory, so the child's allocators must not
hoard it: Arrow's default (mimalloc) reserves a gigabyte up front, jemalloc by default keeps
what it freed mapped and grows an arena per thread, and glibc reserves 64 MiB per thread's
arena. With these settings (and Arrow's threads capped in the child) a child that read a 45 MB
CSV holds about 1 GiB of address space for 250 MiB resident, and no more after the next."""
INHERITED_VARIABLES = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
MEMORY_DEATHS = frozenset({-signal.SIGKILL, -signal.SIGABRT})
"""How a child ends when an allocation fails outside Python's reach: killed by the kernel, or
aborted by a C++ allocation failure."""
RECYCLE_FRACTION = 2
"""A child holding more than 1/RECYCLE_FRACTION of the ceiling after an upload is not reused:
whatever it keeps would come out of the next upload's share."""


TOO_LONG = "the file's profile (its column names and statistics) is too large to store"


class IngestCrashError(RuntimeError):
    """A child failed for a reason that is no fault of the file: a bug, logged with its
    traceback by the child."""


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, ceiling_bytes: int) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiaas.core.data.tabular.ingest_child",
            str(ceiling_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=ANSWER_BYTES,
            env={
                **{name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ},
                **CHILD_ENVIRONMENT,
            },
        )
        child = cls(process)
        assert process.stdout is not None
        try:
            ready = json.loads(await process.stdout.readline() or b"{}").get("ready") is True
        except BaseException:
            await asyncio.shield(child.kill())  # cancelled while it started: it goes too
            raise
        if not ready:
            await child.kill()
            raise IngestCrashError("the ingest process did not start: see its standard error")
        return child

    async def ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The child's answer, or None when it ended without one (killed by the kernel for its
        memory, for one)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return None
        try:
            line = await self.process.stdout.readline()
        except ValueError:  # longer than ANSWER_BYTES: names past any use, at the least
            return {"refused": {"message": TOO_LONG, "field_errors": {"file": TOO_LONG}}}
        if not line:
            return None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def address_space(self) -> int:
        """The child's address space in bytes (`VmSize`); 0 where the kernel does not say."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
        return 0

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the child ends at the end of its input
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class IngestProcesses:
    def __init__(self, config: Config) -> None:
        self.ceiling_bytes = config.ingest_memory_limit_bytes
        self.limits = TableLimits(
            max_columns=config.dataset_max_columns,
            max_rows=config.dataset_max_rows,
            max_cell_bytes=config.dataset_max_cell_bytes,
            max_uncompressed_bytes=config.dataset_max_uncompressed_bytes,
            # A row group is decoded whole, next to the one being written: a quarter of the
            # ceiling leaves room for both and for the profile.
            max_row_group_bytes=config.ingest_memory_limit_bytes // 4,
        )
        self._slots = asyncio.Semaphore(config.ingest_processes)
        self._idle: list[_Child] = []

    def has_idle_slot(self) -> bool:
        """Whether an upload read now would start at once rather than wait its turn."""
        return not self._slots.locked()

    async def normalize(
        self, source: Path, work_dir: Path, options: ReadOptions, *, arriving: bool = False
    ) -> NormalizedTable:
        """Read `source` into `work_dir/normalized.parquet` in a child process; `InputError`
        for a file that cannot be read or is past a limit, the memory ceiling included. A file
        still `arriving` is followed until its receiver marks it complete
        (`tabular.arriving`): cancel this call if it never will be."""
        request = {
            "source": str(source),
            "work_dir": str(work_dir),
            "options": asdict(options),
            "limits": self.limits.as_json(),
            "arriving": arriving,
        }
        async with self._slots:
            child = await self._take_child()
            try:
                answer = await child.ask(request)
            except BaseException:
                # Cancelled (the caller went away) or broken: the child's work stops here.
                await asyncio.shield(child.kill())
                raise
            reusable = answer is not None and ("table" in answer or "refused" in answer)
            if reusable and child.address_space() * RECYCLE_FRACTION <= self.ceiling_bytes:
                self._idle.append(child)
            else:
                await child.kill()
            if answer is None and child.process.returncode not in MEMORY_DEATHS:
                log.error("an ingest process ended with status %s", child.process.returncode)
                raise IngestCrashError("the ingest process ended without an answer")
        return self._result(answer)

    async def _take_child(self) -> _Child:
        """An idle child still alive (one may have died meanwhile), or a new one."""
        while self._idle:
            child = self._idle.pop()
            if child.process.returncode is None:
                return child
            await child.kill()
        return await _Child.start(self.ceiling_bytes)

    def _result(self, answer: dict[str, Any] | None) -> NormalizedTable:
        if answer is None or answer.get("out_of_memory"):
            raise InputError(
                "reading the file takes more memory than an upload may use "
                f"({self.ceiling_bytes >> 20} MiB)",
                field_errors={"file": "past the memory limit of ingest"},
            )
        if "refused" in answer:
            refused = answer["refused"]
            raise InputError(refused["message"], field_errors=refused["field_errors"])
        if "crashed" in answer:
            raise IngestCrashError(f"reading the upload failed: {answer['crashed']}")
        table = answer["table"]
        return NormalizedTable(**{**table, "path": Path(table["path"])})

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(child.stop() for child in idle))


async def _close(processes: IngestProcesses) -> None:
    await processes.close()


INGEST_PROCESSES: ProcessService[IngestProcesses] = ProcessService(
    "ingest processes", lambda platform: IngestProcesses(platform.config), _close
)
"""This process's ingest children: `platform.service(INGEST_PROCESSES)`."""

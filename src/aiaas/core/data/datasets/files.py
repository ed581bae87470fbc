"""Where datasets' files are while an operation works on them: a private scratch directory in
this process's scratch area, and a version's table read back from its sealed artifact."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from aiaas.core.data.datasets.records import DatasetVersion
from aiaas.core.data.scratch_area import scratch_area
from aiaas.core.data.tabular.normalized import read_table
from aiaas.core.governance.vault import VAULT

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


@contextmanager
def scratch(platform: Platform) -> Iterator[Path]:
    """A private directory for one operation's files, removed afterwards whatever happens. It
    lies in this process's scratch area, so that a stop in the middle leaves it to the sweep of
    the next process to start (`scratch_area.py`)."""
    directory = Path(tempfile.mkdtemp(dir=scratch_area(platform)))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def read_version_table(platform: Platform, version: DatasetVersion) -> pa.Table:
    with scratch(platform) as work:
        path = work / "version.parquet"
        await platform.service(VAULT).read_to_file(version.project_id, version.artifact_key, path)
        return await asyncio.to_thread(read_table, path)

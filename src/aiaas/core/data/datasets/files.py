"""Where datasets' files are while an operation works on them: a private scratch directory, and
a version's table read back from its sealed artifact."""

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
from aiaas.core.data.tabular.normalized import read_table
from aiaas.core.governance.vault import VAULT

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


@contextmanager
def scratch(platform: Platform) -> Iterator[Path]:
    """A private directory for one operation's files, removed afterwards whatever happens."""
    base = platform.config.scratch_dir
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def read_version_table(platform: Platform, version: DatasetVersion) -> pa.Table:
    with scratch(platform) as work:
        path = work / "version.parquet"
        await platform.service(VAULT).read_to_file(version.project_id, version.artifact_key, path)
        return await asyncio.to_thread(read_table, path)

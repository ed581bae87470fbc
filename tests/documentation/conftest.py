"""One `aiaas dev` for the documentation's examples, started as the pages tell a reader to start
it: the default data dir, under a home of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dev_support import READY, DevProcess, dev_processes_cleaned_up, start
from doc_examples import DocsServer


@pytest.fixture(scope="session")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsServer]:
    home = tmp_path_factory.mktemp("reader-home")
    for processes in dev_processes_cleaned_up():
        dev: DevProcess = start(
            processes,
            home / ".local" / "share" / "aiaas",
            HOME=str(home),
            # The tests' XLA cache: the pages train a few tiny models, compiled once per machine.
            AIAAS_COMPILATION_CACHE_DIR=os.environ["JAX_COMPILATION_CACHE_DIR"],
        )
        base_url = dev.wait_for(READY, timeout=180).group(1)
        yield DocsServer(base_url, home)

"""Reading an upload while it arrives (`tabular.arriving`): the reader follows the file as a
writer adds to it, waits at its end until the writer marks it complete, and reads what a reader
of the finished file reads, refusals included."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aiaas.core.data.tabular.arriving import BINARY, mark_complete
from aiaas.core.data.tabular.ingest import normalize_upload
from aiaas.core.data.tabular.normalized import NormalizedTable
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.errors import InputError

ROWS = 60_000


def csv_bytes(rows: int = ROWS, last_row: bytes = b"") -> bytes:
    lines = b"".join(
        b"%d,word%d,%d.5,2024-01-%02d\n" % (n, n % 7, n, n % 28 + 1) for n in range(rows)
    )
    return b"id,label,score,day\n" + lines + last_row


class Writer(threading.Thread):
    """Writes `content` to `path` in pieces, pausing between them as a network would, then
    marks it complete unless told to stop short (a body cut off)."""

    def __init__(self, path: Path, content: bytes, *, pieces: int = 8, complete: bool = True):
        super().__init__(daemon=True)
        self.path, self.content, self.pieces, self.complete = path, content, pieces, complete
        path.touch()

    def run(self) -> None:
        size = -(-len(self.content) // self.pieces)
        with self.path.open("ab") as handle:
            for start in range(0, len(self.content), size):
                handle.write(self.content[start : start + size])
                handle.flush()
                time.sleep(0.05)
        if self.complete:
            mark_complete(self.path)


class Reader(threading.Thread):
    def __init__(self, source: Path, work: Path) -> None:
        super().__init__(daemon=True)
        self.source, self.work = source, work
        self.table: NormalizedTable | None = None
        self.problem: InputError | None = None

    def run(self) -> None:
        try:
            self.table = normalize_upload(self.source, self.work, ReadOptions(), arriving=True)
        except InputError as exc:
            self.problem = exc


def read_whole(tmp_path: Path, content: bytes) -> NormalizedTable:
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "upload").write_bytes(content)
    return normalize_upload(whole / "upload", whole, ReadOptions())


def read_arriving(tmp_path: Path, content: bytes, **writing: object) -> Reader:
    arriving = tmp_path / "arriving"
    arriving.mkdir()
    writer = Writer(arriving / "upload", content, **writing)  # type: ignore[arg-type]
    reader = Reader(arriving / "upload", arriving)
    reader.start()
    writer.start()
    writer.join()
    # A reader of a file never marked complete waits on: a moment tells it is still waiting.
    reader.join(timeout=60 if writing.get("complete", True) else 0.5)
    return reader


def test_a_file_read_as_it_arrives_is_the_file_read_whole(tmp_path: Path) -> None:
    content = csv_bytes()

    reader = read_arriving(tmp_path, content)

    assert reader.problem is None
    assert reader.table is not None
    whole = read_whole(tmp_path, content)
    assert reader.table.row_count == whole.row_count == ROWS
    assert reader.table.columns == whole.columns
    assert reader.table.column_stats == whole.column_stats
    assert reader.table.preview == whole.preview


def test_the_reader_waits_at_the_end_until_the_file_is_marked_complete(tmp_path: Path) -> None:
    reader = read_arriving(tmp_path, csv_bytes(), complete=False)

    # Everything was written, but nothing said it was all: the reader still waits for more.
    assert reader.is_alive()
    mark_complete(tmp_path / "arriving" / "upload")
    reader.join(timeout=60)
    assert reader.table is not None
    assert reader.table.row_count == ROWS


@pytest.mark.parametrize("at", ["late", "head"])
def test_a_nul_byte_in_an_arriving_file_is_refused_as_binary(tmp_path: Path, at: str) -> None:
    # Past the sniffed head, the NUL is met while parsing; in the head, before any.
    content = csv_bytes(last_row=b"1,wo\x00rd,2.5,2024-01-01\n")
    if at == "head":
        content = b"id,label\x00,score,day\n" + csv_bytes()[len(b"id,label,score,day\n") :]

    reader = read_arriving(tmp_path, content)

    assert reader.table is None
    assert reader.problem is not None
    assert reader.problem.message == BINARY

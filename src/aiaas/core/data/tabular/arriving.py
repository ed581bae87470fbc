"""An upload read while its body still arrives: the receiver writes the file and, once the last
byte is on disk, creates a marker beside it (`mark_complete`); the reader follows the file,
waiting at its end for more bytes until the marker says there are no more (`ArrivingFile`).

Reading a CSV body as it arrives overlaps the two slowest steps of an upload, receiving and
parsing, instead of running one after the other. Every check still applies: a reader that meets
a NUL byte stops there (`UploadSource.saw_nul`) and the file is refused as binary, as one read
whole would be; a body cut off or past the limit never gets its marker, and the receiver kills
the reading process (`aiaas.core.data.ingest_processes`), so nothing of it is kept.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pyarrow as pa

from aiaas.core.data.tabular.read_options import refuse
from aiaas.core.errors import InputError

POLL_S = 0.002
"""How long a reader at the end of a file still arriving waits before looking again: short
next to the time a mebibyte takes to arrive, and a sleep costs no core."""
BINARY = "the file is neither CSV nor Parquet nor an archive: it holds binary data"


def complete_marker(path: Path) -> Path:
    return path.with_name(path.name + ".complete")


def mark_complete(path: Path) -> None:
    """Tell the reader of `path` that its last byte is written (call after closing it)."""
    complete_marker(path).touch()


class ReceiverGoneError(RuntimeError):
    """The process that received the upload ended before marking it complete."""


class UploadSource:
    """An uploaded file, read whole or while it arrives; opened anew by each reader, and
    remembering whether any of them met a NUL byte."""

    def __init__(self, path: Path, *, arriving: bool = False) -> None:
        self.path = path
        self.arriving = arriving
        self.saw_nul = False
        self.nul_is_binary = True
        """False for text in a wide encoding (UTF-16, UTF-32), whose characters hold NUL
        bytes: its decoded characters are searched instead (`ingest.detect_format`)."""
        self._parent = os.getppid()
        self._open: list[ArrivingFile] = []

    def complete(self) -> bool:
        return not self.arriving or complete_marker(self.path).exists()

    def wait(self) -> None:
        # An orphaned reader would wait forever for a marker no one will write.
        if os.getppid() != self._parent:
            raise ReceiverGoneError("the process receiving the upload is gone")
        time.sleep(POLL_S)

    def wait_for(self, size: int) -> None:
        """Until the file holds `size` bytes, or all it will hold."""
        while not self.complete() and _size_of(self.path) < size:
            self.wait()

    def wait_until_complete(self) -> None:
        while not self.complete():
            self.wait()

    def open(self) -> pa.PythonFile:
        """The file as Arrow reads it, read up to its first NUL byte (if any)."""
        file = ArrivingFile(self)
        self._open.append(file)
        return pa.PythonFile(file, mode="r")

    def let_go(self) -> None:
        """End the files opened so far where they are: Arrow's reader reads ahead on threads
        of its own, and closing it waits for those reads, which would wait for bytes still to
        arrive that no one wants (a reader of the first rows, or one left at an error)."""
        for file in self._open:
            file.let_go = True
        self._open.clear()

    def refuse_if_binary(self) -> None:
        if self.saw_nul:
            raise refuse(BINARY)

    def refusal(self, problem: InputError) -> InputError:
        """The reason to give for `problem` met while reading: a NUL byte cut the reading
        short, and any error that followed is the NUL's."""
        return refuse(BINARY) if self.saw_nul else problem


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class ArrivingFile(io.RawIOBase):
    """A file's bytes in full reads (as a file on disk gives them: short only at its end),
    waiting for bytes still to arrive; it ends early at a NUL byte."""

    def __init__(self, source: UploadSource) -> None:
        super().__init__()
        self._source = source
        source.wait_for(1)  # the receiver creates the file before it starts the reader
        self._handle = source.path.open("rb", buffering=0)
        self._ended = False
        self.let_go = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._ended:
            return b""
        wanted = size if size is not None and size >= 0 else 1 << 62
        pieces: list[bytes] = []
        gathered = 0
        while gathered < wanted:
            # The marker is looked at before reading, so that a read after it sees every byte.
            complete = self._source.complete()
            piece = self._handle.read(min(wanted - gathered, 1 << 24))
            if piece:
                pieces.append(piece)
                gathered += len(piece)
            elif complete or self.let_go:
                break
            else:
                self._source.wait()
        data = b"".join(pieces)
        cut = data.find(b"\x00") if self._source.nul_is_binary else -1
        if cut >= 0:
            self._source.saw_nul = True
            self._ended = True
            return data[:cut]
        return data

    def close(self) -> None:
        self._handle.close()
        super().close()

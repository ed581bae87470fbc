"""Reading an uploaded archive (zip, tar, or gzip-compressed tar) member by member, under limits
that keep a hostile archive from escaping its paths or taking the ingest process's memory.

The format is told from the bytes, never from the name: zip by its local header (`PK\\x03\\x04`,
or `PK\\x05\\x06` for an empty one), tar by `ustar` at offset 257, a gzip stream by `\\x1f\\x8b`
(and then it must hold a tar). Nothing is extracted to disk: each member is read into memory,
at most `MAX_MEMBER_BYTES` of it, and handed on.

Every refusal is an `InputError` naming the member (`field_errors["member"]`):
- a path that is absolute, climbs out (`..`), uses a backslash or a drive, holds a NUL, or
  appears twice;
- a symbolic or hard link, a device, a FIFO: only regular files and folders are read;
- more than `MAX_MEMBERS` members, or a member over `MAX_MEMBER_BYTES`;
- a decompression bomb: more than `limits.max_uncompressed_bytes` inflated in all, or an
  archive whose inflated size is over `MAX_COMPRESSION_RATIO` times its own (past
  `RATIO_EXEMPT_BYTES`, under which no ratio is worth a refusal). Sizes are checked as declared
  and again as read: a member that inflates past what it declared is refused too.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Literal, cast

from aiaas.core.errors import InputError

ArchiveKind = Literal["zip", "tar", "tar.gz"]

MAX_MEMBERS = 200_000
"""Members of one archive, folders included: each becomes a row, and a listing of millions of
empty entries is a way to spend memory on names."""
MAX_MEMBER_BYTES = 64 << 20
"""One member, inflated: a 16-bit 4096x4096 DICOM is 32 MiB; an image larger than this is not
what a model takes."""
MAX_COMPRESSION_RATIO = 100
"""Images compress little (PNG and JPEG not at all, DICOM two to four times); a zip bomb
inflates a thousandfold and more."""
RATIO_EXEMPT_BYTES = 64 << 20
"""Below this inflated total, an archive is not refused for its ratio: a few small, uniform
files compress well and harm nothing."""
TAR_OVERHEAD_FACTOR = 2
"""A tar of many small files is up to about twice their bytes: a 512-byte header and up to 511
bytes of padding each."""
MAX_TAR_HEADER_BYTES = 1 << 20
"""An extended (pax) or GNU long-name header: a path and a few attributes, never megabytes."""
READ_CHUNK_BYTES = 1 << 20
LOCAL_HEADER_BYTES = 30
ENCRYPTED_FLAG = 0x1
TAR_MAGIC_OFFSET = 257
SNIFF_BYTES = 512


class _InflationCounter(io.RawIOBase):
    """A readable stream that refuses, as a decompression bomb, to give more than `limit`
    bytes in all."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.given = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.given += len(data)
        if self.given > self.limit:
            raise refuse_member(
                "", f"the archive inflates past {self.limit} bytes (a decompression bomb)"
            )
        return data


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads an extended (pax) or long-name header's body whole before any member is
    seen: such a header larger than `MAX_TAR_HEADER_BYTES` is refused before it is read."""

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        return super()._proc_pax(tarfile)  # type: ignore[misc,no-any-return]

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_header_size(self)
        return super()._proc_gnulong(tarfile)  # type: ignore[misc,no-any-return]


def _check_header_size(info: tarfile.TarInfo) -> None:
    if info.size > MAX_TAR_HEADER_BYTES:
        raise refuse_member(
            "", f"an extended tar header of {info.size} bytes, past {MAX_TAR_HEADER_BYTES}"
        )


def refuse_member(member: str, problem: str) -> InputError:
    """A refusal naming the member at fault (`field_errors["member"]`), or the whole archive
    when `member` is empty."""
    if not member:
        return InputError(problem, field_errors={"file": problem})
    message = f"{member}: {problem}"
    return InputError(message, field_errors={"file": message, "member": member})


def archive_kind(head: bytes) -> ArchiveKind | None:
    """The archive format of a file that starts with `head` (its first 512 bytes at least), or
    None for anything else."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    return None


def sniff_archive(path: Path) -> ArchiveKind | None:
    with path.open("rb") as handle:
        kind = archive_kind(handle.read(SNIFF_BYTES))
    if kind == "tar.gz" and not _gzip_holds_tar(path):
        return None  # a gzip file of something else (a CSV, say): not an archive of images
    return kind


def _gzip_holds_tar(path: Path) -> bool:
    """Whether the gzip file's first inflated block is a tar header: 512 bytes inflated, never
    more, so a gzip bomb costs nothing here."""
    try:
        with gzip.open(path, "rb") as inflated:
            header = inflated.read(TAR_MAGIC_OFFSET + 5)
    except (OSError, EOFError, zlib.error):
        return False
    return header[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar"


def member_path(name: str) -> str:
    """A member's name as the POSIX path relative to the archive's root that a version keeps;
    `InputError` for one that could land outside it. A leading `./` is dropped (`tar -C dir .`
    writes one)."""
    shown = repr(name[:200]) if not name.isprintable() else name[:200]
    if "\x00" in name or "\\" in name or not name.isprintable():
        raise refuse_member(shown, "the path holds a backslash or a control character")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise refuse_member(shown, "the path is absolute")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts:
        raise refuse_member(shown, "the path climbs out of the archive (..)")
    return "/".join(parts)


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    """As declared by the archive; the read checks it."""


class Archive:
    """An archive opened for reading: `members()` lists its regular files (folders skipped)
    after checking every entry against the limits, `read(member)` answers one's bytes."""

    def __init__(self, path: Path, kind: ArchiveKind, max_inflated_bytes: int) -> None:
        self.path = path
        self.kind = kind
        self.max_inflated_bytes = max_inflated_bytes
        self.archive_bytes = max(path.stat().st_size, 1)
        self._zip: zipfile.ZipFile | None = None
        self._fd: int | None = None
        try:
            if kind == "zip":
                self._zip = zipfile.ZipFile(path)
                self._fd = os.open(path, os.O_RDONLY)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            self.close()
            raise refuse_member("", f"the file is not a valid zip archive: {exc}") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def members(self) -> list[Member]:
        entries = self._zip_entries() if self._zip is not None else self._tar_entries()
        seen: set[str] = set()
        files: list[Member] = []
        total = 0
        for count, (name, size, kind) in enumerate(entries, start=1):
            if count > MAX_MEMBERS:
                raise refuse_member("", f"the archive holds more than {MAX_MEMBERS} members")
            path = member_path(name)
            if kind == "dir" or not path:
                continue
            if kind != "file":
                raise refuse_member(path, f"a {kind}: only regular files are read")
            if path in seen:
                raise refuse_member(path, "the path appears twice in the archive")
            seen.add(path)
            if size > MAX_MEMBER_BYTES:
                raise refuse_member(
                    path, f"inflates to {size} bytes, past the limit of {MAX_MEMBER_BYTES}"
                )
            total += size
            self._check_total(path, total)
            files.append(Member(path, size))
        return files

    def _check_total(self, path: str, total: int) -> None:
        if total > self.max_inflated_bytes:
            raise refuse_member(
                path,
                f"the archive inflates to more than {self.max_inflated_bytes} bytes "
                "(a decompression bomb?)",
            )
        if total > RATIO_EXEMPT_BYTES and total > self.archive_bytes * MAX_COMPRESSION_RATIO:
            raise refuse_member(
                path,
                f"the archive inflates over {MAX_COMPRESSION_RATIO} times its size "
                "(a decompression bomb)",
            )

    def _zip_entries(self) -> Iterator[tuple[str, int, str]]:
        assert self._zip is not None
        for info in self._zip.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind = "symbolic link"
            elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                # Only Unix archivers write a file type; a zero type is a plain file.
                kind = "special file"
            else:
                kind = "file"
            yield info.filename, info.file_size, kind

    def _tar_entries(self) -> Iterator[tuple[str, int, str]]:
        with self._open_tar() as archive:
            while True:
                info = self._next_tar(archive)
                if info is None:
                    return
                yield info.name, info.size, _tar_kind(info)

    @contextlib.contextmanager
    def _open_tar(self) -> Iterator[tarfile.TarFile]:
        # Stream mode ("r|"): the members are read in order, never sought, and a gzip stream is
        # inflated once per pass. Every inflated byte goes through a counter: the sizes the
        # members declare leave out what tarfile reads for itself (extended and long-name
        # headers, padding), so only the stream's own count bounds the inflation.
        with gzip.open(self.path) if self.kind == "tar.gz" else open(self.path, "rb") as raw:
            counted = _InflationCounter(cast(IO[bytes], raw), self._inflation_limit())
            try:
                archive = tarfile.open(  # noqa: SIM115 - closed by the `with` below
                    fileobj=counted, mode="r|", tarinfo=_BoundedTarInfo
                )
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise refuse_member("", f"the file is not a valid tar archive: {exc}") from None
            with archive:
                yield archive

    def _inflation_limit(self) -> int:
        """The most bytes a tar stream may inflate to: what its members may add up to, twice
        over for the headers and padding of many small files."""
        by_ratio = max(RATIO_EXEMPT_BYTES, self.archive_bytes * MAX_COMPRESSION_RATIO)
        return TAR_OVERHEAD_FACTOR * min(self.max_inflated_bytes, by_ratio)

    def _next_tar(self, archive: tarfile.TarFile) -> tarfile.TarInfo | None:
        try:
            return archive.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise refuse_member("", f"the file is not a valid tar archive: {exc}") from None

    def read_all(self, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
        """The bytes of each member named in `wanted`, in the archive's order."""
        if self._zip is not None:
            for info in self._zip.infolist():
                if info.is_dir():
                    continue
                path = member_path(info.filename)
                if path in wanted:
                    stored = self._read_stored(path, info)
                    if stored is not None:
                        yield path, stored
                        continue
                    opener = partial(self._open_zip, info)
                    yield path, self._bounded(path, opener, info.file_size)
            return
        with self._open_tar() as archive:
            while (entry := self._next_tar(archive)) is not None:
                if not entry.isfile():
                    continue
                path = member_path(entry.name)
                if path in wanted:
                    yield (
                        path,
                        self._bounded(path, partial(_tar_member, archive, entry), entry.size),
                    )

    def _read_stored(self, path: str, info: zipfile.ZipInfo) -> bytes | None:
        """A stored (uncompressed), unencrypted zip member's bytes, read with two positioned
        reads and its checksum checked; None for any other member, which zipfile reads. Images
        are stored, not deflated, by most archivers, and zipfile's reads cost three seeks
        each: a third of an archive of small images' ingest."""
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & ENCRYPTED_FLAG:
            return None
        assert self._fd is not None  # open while the archive is
        if info.compress_size != info.file_size or info.file_size > MAX_MEMBER_BYTES:
            raise refuse_member(path, "a stored member whose sizes disagree")
        header = os.pread(self._fd, LOCAL_HEADER_BYTES, info.header_offset)
        if len(header) != LOCAL_HEADER_BYTES or not header.startswith(b"PK\x03\x04"):
            raise refuse_member(path, "its local header is missing (a corrupt zip archive)")
        name_bytes, extra_bytes = struct.unpack("<HH", header[26:30])
        start = info.header_offset + LOCAL_HEADER_BYTES + name_bytes + extra_bytes
        data = os.pread(self._fd, info.file_size, start)
        if len(data) != info.file_size:
            raise refuse_member(path, "shorter than the archive declares")
        if zlib.crc32(data) != info.CRC:
            raise refuse_member(path, "its checksum does not match (a corrupt zip archive)")
        return data

    def _open_zip(self, info: zipfile.ZipInfo) -> IO[bytes]:
        assert self._zip is not None
        return self._zip.open(info)

    def _bounded(self, path: str, opener: Callable[[], IO[bytes]], declared: int) -> bytes:
        """A member's bytes, read in chunks: `InputError` naming it for one that inflates past
        what it declared, ends short, or cannot be read (corrupt, encrypted, an unknown
        compression)."""
        chunks: list[bytes] = []
        read = 0
        try:
            with opener() as handle:
                while chunk := handle.read(min(READ_CHUNK_BYTES, declared + 1 - read) or 1):
                    read += len(chunk)
                    if read > declared:
                        raise refuse_member(path, "inflates past the size the archive declares")
                    chunks.append(chunk)
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            OSError,
            EOFError,
            ValueError,
            # zipfile's answer to an encrypted member, and to a compression it does not know.
            RuntimeError,
            NotImplementedError,
        ) as exc:
            raise refuse_member(path, f"cannot be read from the archive: {exc}") from None
        if read != declared:
            raise refuse_member(path, "shorter than the archive declares")
        return b"".join(chunks)


def _tar_member(archive: tarfile.TarFile, entry: tarfile.TarInfo) -> IO[bytes]:
    data = archive.extractfile(entry)
    assert data is not None  # a regular file has its data
    return data


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.isfile():
        return "file"
    return "special file"

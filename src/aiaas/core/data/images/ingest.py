"""Reading an uploaded archive of images (PNG, JPEG, DICOM) into a normalized Parquet table of
the image contract (docs/guides/images.md): one row per image, `path`, `image`, `label`,
`width`, `height`, `channels`, `format`, and `dicom_tags`.

The archive is read twice, member by member (`archives`): once to list and check its members
and read its label file, once to decode its images, a batch of rows at a time, so that memory
holds one batch whatever the archive's size. Each PNG or JPEG is decoded once (`decode_image`)
to prove it whole and kept as uploaded; each DICOM file's pixels are encoded as an 8-bit PNG
(`dicom`). A member that is none of these is refused, except the operating systems' own files
(`__MACOSX/`, `._*`, `.DS_Store`, `Thumbs.db`), skipped and counted.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from aiaas.core.data.images.archives import Archive, ArchiveKind, Member, refuse_member
from aiaas.core.data.images.dicom import decode_dicom, is_dicom
from aiaas.core.data.images.labels import (
    LABEL_FILES,
    MAX_LABEL_FILE_BYTES,
    folder_label,
    read_labels,
)
from aiaas.core.data.tabular.limits import TableLimits
from aiaas.core.data.tabular.normalized import NormalizedTable, write_normalized
from aiaas.core.errors import InputError
from aiaas.core.images import ImageError, decode_image, encode_png, image_format

IMAGE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("image", pa.binary()),
        ("label", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("channels", pa.int32()),
        ("format", pa.string()),
        ("dicom_tags", pa.string()),
    ]
)
BATCH_ROWS = 1024
BATCH_BYTES = 32 << 20
"""A batch of rows is written once it holds this many images or bytes of them."""
DECODE_THREADS = 4
"""Pillow and pydicom's decoders release the GIL: images decode on a few cores at once."""
MAX_BALANCE_LABELS = 1000
"""The label balance lists this many labels at most, the most frequent first."""
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
NO_TAGS = "{}"


def is_system_file(path: str) -> bool:
    """A file an operating system's archiver adds beside the user's: skipped, not refused."""
    name = path.rpartition("/")[2]
    return path.startswith("__MACOSX/") or name.startswith("._") or name in SYSTEM_FILES


@dataclasses.dataclass
class _Row:
    path: str
    image: bytes
    width: int
    height: int
    channels: int
    format: str
    dicom_tags: str | None


def decoded_row(path: str, data: bytes, keep_personal_tags: bool) -> _Row:
    """One member as a row of the table; `InputError` naming it for one that is no image."""
    try:
        return _decoded_row(path, data, keep_personal_tags)
    except ImageError as exc:  # its message names the member already
        raise InputError(exc.message, field_errors={"file": exc.message, "member": path}) from None
    except InputError:
        raise
    except MemoryError:
        raise  # the ingest process answers it as the memory ceiling
    except Exception as exc:
        # A hostile file can fail a decoder's parser in ways its own error types do not cover
        # (struct.error, IndexError...): still a refusal of that file, not a crash.
        raise refuse_member(path, f"does not decode: {type(exc).__name__}: {exc}") from None


def _decoded_row(path: str, data: bytes, keep_personal_tags: bool) -> _Row:
    uploaded = image_format(data)
    if uploaded is not None:
        pixels = decode_image(data, name=path)
        height, width, channels = pixels.shape
        # No tags: an empty object rather than a null, which quality checks would count as a
        # missing value in every PNG and JPEG row.
        return _Row(path, data, width, height, channels, uploaded, NO_TAGS)
    if is_dicom(data):
        pixels, tags = decode_dicom(data, name=path, keep_personal=keep_personal_tags)
        height, width, channels = pixels.shape
        return _Row(path, encode_png(pixels), width, height, channels, "dicom", tags)
    raise refuse_member(path, "not a PNG, JPEG or DICOM file")


class _ImageArchiveReader:
    def __init__(
        self, path: Path, kind: ArchiveKind, limits: TableLimits, keep_personal_tags: bool
    ) -> None:
        self.archive = Archive(path, kind, limits.max_uncompressed_bytes)
        self.limits = limits
        self.keep_personal_tags = keep_personal_tags
        self.skipped = 0
        self.dicom_files = 0
        self.label_counts: Counter[str] = Counter()

    def plan(self) -> tuple[list[str], dict[str, str | None]]:
        """The images' paths, in the archive's order, and their labels."""
        members = self.archive.members()
        label_files = [member for member in members if member.path in LABEL_FILES]
        images = [
            member.path
            for member in members
            if member.path not in LABEL_FILES and not is_system_file(member.path)
        ]
        self.skipped = len(members) - len(images) - len(label_files)
        for path in images:
            if path.rpartition("/")[2] in LABEL_FILES:
                raise refuse_member(path, "a label file is read only at the archive's root")
        if not images:
            raise refuse_member("", "the archive holds no images")
        if len(images) > self.limits.max_rows:
            raise refuse_member("", f"the archive holds more than {self.limits.max_rows} images")
        if len(label_files) > 1:
            raise refuse_member(label_files[1].path, "the archive holds two label files")
        if label_files:
            return images, self._file_labels(label_files[0], images)
        return images, {path: folder_label(path) for path in images}

    def _file_labels(self, member: Member, images: list[str]) -> dict[str, str | None]:
        if member.size > MAX_LABEL_FILE_BYTES:
            raise refuse_member(
                member.path, f"the label file is larger than {MAX_LABEL_FILE_BYTES} bytes"
            )
        ((_, data),) = list(self.archive.read_all({member.path}))
        given = read_labels(member.path, data, images)
        return {path: given.get(path) for path in images}

    def batches(self, images: list[str], labels: dict[str, str | None]) -> Iterator[pa.RecordBatch]:
        rows: list[_Row] = []
        held = 0
        with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="image-decode") as pool:
            # A window of decodes in flight, in the archive's order: memory holds a few images
            # beyond the batch, not the archive.
            pending: deque[Future[_Row]] = deque()
            for path, data in self.archive.read_all(set(images)):
                pending.append(pool.submit(decoded_row, path, data, self.keep_personal_tags))
                if len(pending) >= DECODE_THREADS * 2:
                    row = pending.popleft().result()
                    rows.append(row)
                    held += len(row.image)
                    if len(rows) >= BATCH_ROWS or held >= BATCH_BYTES:
                        yield self._batch(rows, labels)
                        rows, held = [], 0
            rows.extend(future.result() for future in pending)
        if rows:
            yield self._batch(rows, labels)

    def _batch(self, rows: list[_Row], labels: dict[str, str | None]) -> pa.RecordBatch:
        row_labels = [labels.get(row.path) for row in rows]
        self.label_counts.update(label for label in row_labels if label is not None)
        self.dicom_files += sum(1 for row in rows if row.format == "dicom")
        return pa.RecordBatch.from_arrays(
            [
                pa.array([row.path for row in rows], pa.string()),
                pa.array([row.image for row in rows], pa.binary()),
                pa.array(row_labels, pa.string()),
                pa.array([row.width for row in rows], pa.int32()),
                pa.array([row.height for row in rows], pa.int32()),
                pa.array([row.channels for row in rows], pa.int32()),
                pa.array([row.format for row in rows], pa.string()),
                pa.array([row.dicom_tags for row in rows], pa.string()),
            ],
            schema=IMAGE_SCHEMA,
        )

    def label_balance(self) -> list[dict[str, Any]]:
        return [
            {"value": label, "count": count}
            for label, count in self.label_counts.most_common(MAX_BALANCE_LABELS)
        ]


def normalize_image_archive(
    path: Path,
    kind: ArchiveKind,
    destination: Path,
    limits: TableLimits,
    *,
    keep_personal_tags: bool,
) -> NormalizedTable:
    """Read an archive of images into `destination`, or raise `InputError` naming the member
    at fault; nothing is written elsewhere."""
    reader = _ImageArchiveReader(path, kind, limits, keep_personal_tags)
    try:
        images, labels = reader.plan()
        table = write_normalized(
            reader.batches(images, labels), IMAGE_SCHEMA, destination, "images"
        )
    finally:
        reader.archive.close()
    label_stats = {
        **table.column_stats["label"],
        "label_balance": reader.label_balance(),
        "label_balance_exact": len(reader.label_counts) <= MAX_BALANCE_LABELS,
    }
    summary: dict[str, Any] = {
        "images": table.row_count,
        "skipped_files": reader.skipped,
        "dicom_files": reader.dicom_files,
    }
    if reader.dicom_files:
        summary["dicom_personal_tags"] = "kept" if keep_personal_tags else "dropped"
    return dataclasses.replace(
        table,
        column_stats={**table.column_stats, "label": label_stats},
        ingest_summary=summary,
    )

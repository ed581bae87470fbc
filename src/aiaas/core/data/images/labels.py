"""An image archive's labels: from its label file, or from its folders.

The label file is `labels.csv` or `labels.parquet` at the archive's root, with a `path` column
(each image's path inside the archive, as listed) and a `label` column; other columns are
ignored. Every path it names must be an image of the archive, and appear once; an image it does
not name is unlabelled. Without a label file, an image's label is the name of the folder it is
in (`cats/001.png` is a `cats`; `train/cats/001.png` too), and an image at the root is
unlabelled.
"""

from __future__ import annotations

import io
from collections.abc import Collection

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aiaas.core.data.images.archives import refuse_member

LABEL_FILES = ("labels.csv", "labels.parquet")
MAX_LABEL_FILE_BYTES = 64 << 20
MAX_LABEL_CHARS = 200
SHOWN_MISSING = 5


def folder_label(path: str) -> str | None:
    folder, _, _ = path.rpartition("/")
    return folder.rpartition("/")[2] or None


def _label_table(name: str, data: bytes) -> pa.Table:
    try:
        if name.endswith(".parquet"):
            return pq.read_table(io.BytesIO(data), columns=["path", "label"])
        return pa_csv.read_csv(
            io.BytesIO(data),
            convert_options=pa_csv.ConvertOptions(
                include_columns=["path", "label"],
                column_types={"path": pa.string(), "label": pa.string()},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise refuse_member(
            name, f"the label file cannot be read (it needs columns path and label): {exc}"
        ) from None


def read_labels(name: str, data: bytes, images: Collection[str]) -> dict[str, str | None]:
    """The labels a label file gives, by image path; `InputError` naming the label file for one
    that names an image the archive lacks, names one twice, or cannot be read."""
    table = _label_table(name, data)
    try:
        paths = table.column("path").cast(pa.string()).to_pylist()
        labels = table.column("label").cast(pa.string()).to_pylist()
    except (pa.ArrowException, KeyError) as exc:
        raise refuse_member(name, f"the label file's path and label must be text: {exc}") from None
    given: dict[str, str | None] = {}
    for written, label in zip(paths, labels, strict=True):
        if written is None:
            raise refuse_member(name, "the label file has a row without a path")
        path = written.removeprefix("./")
        if path in given:
            raise refuse_member(name, f"the label file names {path!r} twice")
        if label is not None and len(label) > MAX_LABEL_CHARS:
            raise refuse_member(
                name, f"the label of {path!r} is longer than {MAX_LABEL_CHARS} characters"
            )
        given[path] = label
    missing = sorted(set(given) - set(images))
    if missing:
        shown = ", ".join(repr(path) for path in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise refuse_member(
            name, f"the label file names images the archive does not hold: {shown}{more}"
        )
    return given

"""How much of a text cell a version keeps in its preview and column statistics, and how a cut
one is marked.

Both are stored as JSON on the version's row and sent whole with it: a single 64 MiB cell kept
there made even `latestVersion { number }` of its dataset cost half a second and a hundred MiB.
So a text longer than `SHOWN_TEXT_CHARS` characters is kept as its first `SHOWN_TEXT_CHARS`
characters followed by `TRUNCATION_MARK` and its full length, e.g. `"abc… [1048576 characters]"`
(`cut_text`). The same cut form stands for it wherever it appears, and the structure around it
says it was cut: a top value gets `"truncated": true` and `"length"`; a preview cell is listed
in its column's `preview_truncated_rows` (`normalized.write_normalized`).

While the top values are counted, a long text is held as a `LongText`: its beginning, length
and a digest of the whole, so that texts sharing their beginning still count apart while the
memory held stays bounded by `COUNTED_CAP` times `SHOWN_TEXT_CHARS`."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

SHOWN_TEXT_CHARS = 200
"""Enough to recognize a value (two or three lines of a table cell, a sentence, a path or a
key), few enough that a preview of 20 rows of a few dozen text columns stays within a few
hundred KiB however large the cells are."""
TRUNCATION_MARK = "…"
DIGEST_BYTES = 16
"""A 128-bit digest: two different long texts of one column would count as one only by a
collision no column of data comes near."""


def cut_text(text: str) -> str:
    """The shown form of a text longer than `SHOWN_TEXT_CHARS`: its beginning, the mark, and
    its full length in characters."""
    return _marked(text[:SHOWN_TEXT_CHARS], len(text))


def _marked(beginning: str, length: int) -> str:
    return f"{beginning}{TRUNCATION_MARK} [{length} characters]"


def shown_text(text: str) -> tuple[str, int | None]:
    """`text` as a version keeps it, and its full length when it was cut (None when whole)."""
    if len(text) <= SHOWN_TEXT_CHARS:
        return text, None
    return cut_text(text), len(text)


@dataclass(frozen=True)
class LongText:
    """A counted text longer than `SHOWN_TEXT_CHARS`, held without the text itself."""

    beginning: str
    length: int
    digest: bytes

    def __str__(self) -> str:
        # What the top values show, and sort equal counts by.
        return _marked(self.beginning, self.length)


def _digest(utf8: bytes | pa.Buffer) -> bytes:
    return hashlib.blake2b(utf8, digest_size=DIGEST_BYTES).digest()


def count_key(value: Hashable) -> Hashable:
    """The key a value is counted under: itself, or a `LongText` for a long text (bytes are
    counted as the text they decode to, as they are shown)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str) and len(value) > SHOWN_TEXT_CHARS:
        return LongText(value[:SHOWN_TEXT_CHARS], len(value), _digest(value.encode("utf-8")))
    return value


def count_keys(values: pa.Array) -> list[Hashable]:
    """The count keys (`count_key`) of non-null `values`. A text column is read without
    turning its long texts into Python strings: only their beginnings, and a digest made from
    Arrow's own buffer."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return [count_key(value) for value in values.to_pylist()]
    lengths = pc.utf8_length(values)
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= SHOWN_TEXT_CHARS:
        return list(values.to_pylist())
    beginnings = pc.utf8_slice_codeunits(values, 0, SHOWN_TEXT_CHARS).to_pylist()
    keys: list[Hashable] = []
    for index, (beginning, length) in enumerate(zip(beginnings, lengths.to_pylist(), strict=True)):
        if length <= SHOWN_TEXT_CHARS:
            keys.append(beginning)
        else:
            keys.append(LongText(beginning, length, _digest(values[index].as_buffer())))
    return keys

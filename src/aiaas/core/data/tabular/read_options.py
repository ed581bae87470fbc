"""What an uploader may declare about a file, checked before any of it reaches Python's codecs
or Arrow's parser.

An encoding is a name the uploader types, and Python's codec registry holds far more than text
encodings: `rot13`, `base64`, `bz2_codec` or `punycode` would each be "decoded", some of them
into a bomb. So only the text encodings listed here are accepted, by their canonical codec name.
A delimiter is one printable ASCII character (or a tab): Arrow splits on one byte.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from aiaas.core.data.tabular.normalized import SourceFormat
from aiaas.core.errors import InputError

TEXT_ENCODINGS = frozenset(
    {
        "utf-8",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
        "ascii",
        "iso8859-1",
        "iso8859-2",
        "iso8859-15",
        "cp1250",
        "cp1251",
        "cp1252",
        "mac-roman",
        "koi8-r",
        "shift_jis",
        "euc_jp",
        "gb18030",
        "gbk",
        "big5",
        "euc_kr",
    }
)
"""The canonical names (`codecs.lookup(name).name`) of the encodings a CSV upload may declare."""

WIDE_ENCODINGS = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
"""Encodings whose text holds NUL bytes: a file in one is searched for NUL once decoded."""

LONGEST_ENCODING_NAME = 32


def refuse(message: str, field: str = "file") -> InputError:
    return InputError(message, field_errors={field: message})


def canonical_encoding(declared: str) -> str:
    """The codec name of a declared text encoding, or `InputError` naming `encoding`."""
    known = ", ".join(sorted(TEXT_ENCODINGS))
    try:
        name = codecs.lookup(declared).name if len(declared) <= LONGEST_ENCODING_NAME else ""
    except (LookupError, ValueError, TypeError):
        name = ""
    if name not in TEXT_ENCODINGS:
        # repr() escapes NUL, surrogates and every other unprintable character it is given.
        shown = repr(declared[:LONGEST_ENCODING_NAME])
        raise refuse(f"unknown encoding {shown}: the text encodings known are {known}", "encoding")
    return name


def checked_delimiter(declared: str) -> str:
    """A declared delimiter: one printable ASCII character other than a quote, or a tab."""
    if declared == "\t" or (
        len(declared) == 1 and declared.isascii() and declared.isprintable() and declared != '"'
    ):
        return declared
    raise refuse(
        "the delimiter must be one character: a printable ASCII one other than a quote, or a tab",
        "delimiter",
    )


@dataclass(frozen=True)
class ReadOptions:
    """What the uploader may declare; anything left None is detected. Checked when made, so a
    bad option is refused before the upload is read."""

    format: SourceFormat | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    keep_dicom_personal_tags: bool = False
    """The project's setting (`project_settings`), set by the domain, never by the uploader."""

    def __post_init__(self) -> None:
        if self.encoding is not None:
            object.__setattr__(self, "encoding", canonical_encoding(self.encoding))
        if self.delimiter is not None:
            checked_delimiter(self.delimiter)

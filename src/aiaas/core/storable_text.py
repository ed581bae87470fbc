"""Text PostgreSQL can store, and that no request may make larger than this: checked where
text comes in (GraphQL arguments, REST path segments and query options), not in each
resolver."""

from __future__ import annotations

import re

MAX_TEXT_BYTES = 64 * 1024
"""The longest string any argument, input field, path segment or query option takes, in UTF-8
bytes."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """What makes `text` unfit to store, or None."""
    if "\x00" in text:
        return "contains a NUL character (U+0000)"
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return "contains a lone UTF-16 surrogate (U+D800 to U+DFFF)"
    # A character is at most 4 bytes in UTF-8: encode only when the count could be over.
    if len(text) > MAX_TEXT_BYTES or (
        len(text) * 4 > MAX_TEXT_BYTES and len(text.encode()) > MAX_TEXT_BYTES
    ):
        return f"is longer than {MAX_TEXT_BYTES} bytes"
    return None

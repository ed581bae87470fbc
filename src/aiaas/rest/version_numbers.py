"""Version numbers as REST paths and query strings give them: text, checked before any lookup."""

from __future__ import annotations

from aiaas.core.errors import InputError

LARGEST_NUMBER = 2**31 - 1
"""Version numbers are PostgreSQL integers: a larger one names no version."""


def version_number(text: str, field: str = "number") -> int:
    """`text` as a version number, or an `InputError` naming `field`."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= LARGEST_NUMBER:
        raise InputError(
            f"{field} must be a version number",
            field_errors={field: f"a whole number from 1 to {LARGEST_NUMBER}"},
        )
    return int(text)

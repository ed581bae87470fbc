"""Sealed values, the primitive alone (`aiaas.core.governance.sealed_values`): a value sealed for
one row, column and project opens there and nowhere else. No database: the sealed columns in use
are in test_row_data_at_rest.py."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.core.errors import ArtifactIntegrityError
from aiaas.core.governance.crypto import new_data_key
from aiaas.core.governance.sealed_values import (
    OVERHEAD,
    SealedColumn,
    json_bytes,
    jsonb_ordered,
)

PREVIEW = SealedColumn("dataset_versions", "sealed_preview")
KEY = new_data_key()
PROJECT = uuid.uuid4()
ROW = uuid.uuid4()
SECRET = b"Zanzibar, 12 Stone Town Road"


def test_a_value_opens_where_it_was_sealed_and_holds_no_plaintext() -> None:
    sealed = PREVIEW.seal(KEY, PROJECT, ROW, SECRET)

    assert PREVIEW.open(KEY, PROJECT, ROW, sealed) == SECRET
    assert SECRET not in sealed and b"Zanzibar" not in sealed
    assert len(sealed) == len(SECRET) + OVERHEAD
    # A fresh salt each time: equal values do not look equal.
    assert PREVIEW.seal(KEY, PROJECT, ROW, SECRET) != sealed


@pytest.mark.parametrize(
    ("where", "column", "project", "row"),
    [
        ("another row", PREVIEW, PROJECT, uuid.uuid4()),
        ("another project", PREVIEW, uuid.uuid4(), ROW),
        ("another column", SealedColumn("dataset_versions", "sealed_column_values"), PROJECT, ROW),
        ("another table", SealedColumn("quality_reports", "sealed_preview"), PROJECT, ROW),
    ],
)
def test_a_value_does_not_open_anywhere_else(
    where: str, column: SealedColumn, project: uuid.UUID, row: uuid.UUID
) -> None:
    sealed = PREVIEW.seal(KEY, PROJECT, ROW, SECRET)

    with pytest.raises(ArtifactIntegrityError) as refused:
        column.open(KEY, project, row, sealed)

    assert str(refused.value) == (
        f"the sealed {column.column} of {column.table} row {row} does not open: it was "
        "altered, or copied from another row"
    ), where


def test_another_projects_key_does_not_open_it() -> None:
    sealed = PREVIEW.seal(KEY, PROJECT, ROW, SECRET)

    with pytest.raises(ArtifactIntegrityError, match="does not open"):
        PREVIEW.open(new_data_key(), PROJECT, ROW, sealed)


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_refused(position: int, flip: int) -> None:
    sealed = bytearray(PREVIEW.seal(KEY, PROJECT, ROW, SECRET))
    sealed[position % len(sealed)] ^= flip

    with pytest.raises(ArtifactIntegrityError):
        PREVIEW.open(KEY, PROJECT, ROW, bytes(sealed))


@pytest.mark.parametrize(
    "stored", [b"", b"\x01", b"\x01" + bytes(OVERHEAD - 2), b'[{"city": "Zanzibar"}]']
)
def test_what_is_not_a_sealed_value_is_refused_as_such(stored: bytes) -> None:
    with pytest.raises(ArtifactIntegrityError, match="is not a sealed value"):
        PREVIEW.open(KEY, PROJECT, ROW, stored)


def test_json_values_round_trip_in_jsonb_key_order() -> None:
    value = [{"name": "Ada", "id": 1, "é": None, "nested": {"bb": 2, "a": [True, 1.5]}}]
    sealed = PREVIEW.seal_json(KEY, PROJECT, ROW, value)

    opened = PREVIEW.open_json(KEY, PROJECT, ROW, sealed)

    assert opened == value
    # Shorter keys first (in bytes: "é" is two), then bytewise.
    assert list(opened[0]) == ["id", "é", "name", "nested"]
    assert list(opened[0]["nested"]) == ["a", "bb"]


def test_json_refuses_what_jsonb_refuses() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        json_bytes({"x": float("nan")})


@given(st.dictionaries(st.text(max_size=6), st.integers(), max_size=8))
def test_jsonb_order_is_by_length_in_bytes_then_bytes(value: dict[str, int]) -> None:
    keys = list(jsonb_ordered(value))

    assert sorted(keys) == sorted(value)
    encoded = [key.encode() for key in keys]
    assert encoded == sorted(encoded, key=lambda key: (len(key), key))

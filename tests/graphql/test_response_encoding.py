"""GraphQL answers are written by orjson, and by the standard library where orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiaas.graphql.view import GraphQLView


@pytest.mark.parametrize(
    "data",
    [
        {
            "data": {
                "columns": {"steps": list(range(1000)), "values": [0.1 * i for i in range(1000)]}
            }
        },
        {"data": {"name": "Ærø 東京 🚀", "nothing": None, "flag": True}},
        {"data": {"big": 2**70, "negative": -(2**70)}},  # beyond 64 bits: orjson refuses
        {"data": {"text": "lone \ud800 surrogate"}},  # not UTF-8: orjson refuses
    ],
    ids=["floats", "non-ascii", "big-integers", "lone-surrogate"],
)
def test_an_answer_reads_back_as_the_data_it_was_written_from(data: dict[str, Any]) -> None:
    encoded = GraphQLView.encode_json(None, data)  # type: ignore[arg-type]  # uses no state
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == data


def test_an_answer_is_compact_and_utf_8() -> None:
    assert GraphQLView.encode_json(None, {"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()  # type: ignore[arg-type]

"""Bodies for the REST fuzz (tests/rest/test_rest_fuzz.py): V2 inference requests for the wine
classifier, in JSON and with binary tensors, and dataset files; each mostly well formed with a
few things wrong, so that most examples get past the parser to the checks behind it, and some
not formed at all.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from hostile_http import deflate_bomb, gzip_bomb, hostile_text, json_bytes, nested_json
from serving_support import wine_table

WINE_FEATURES = [name for name in wine_table().column_names if name != "cultivar"]
V2_DATATYPES = ["BOOL", "UINT8", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    hostile_text,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=10,
)
dimensions = st.one_of(
    st.integers(0, 5),
    st.sampled_from([2**31 - 1, 2**31, 2**63, -1]),
)
shapes = st.one_of(st.lists(dimensions, max_size=3), st.lists(dimensions, max_size=10), json_value)
values = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(),
    st.integers(-(2**70), 2**70),
    json_leaf,
)

# V2 inference -----------------------------------------------------------------------------------


def wine_tensors(rows: int, data: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": "FP32", "shape": [rows], "data": data} for name in WINE_FEATURES
    ]


_REPLACEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(hostile_text, json_value),
    "datatype": st.one_of(st.sampled_from([*V2_DATATYPES, "BF16", "fp32"]), json_value),
    "shape": shapes,
    "data": st.one_of(st.lists(values, max_size=6), json_value),
    "parameters": st.one_of(
        st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.one_of(st.integers(-5, 64), json_value)}
        ),
        json_value,
    ),
}


def _mutate(draw: st.DrawFn, tensor: dict[str, Any]) -> dict[str, Any] | None:
    """The tensor with one field replaced, or a field added, or None to drop it."""
    change = draw(st.sampled_from(["drop", "junk", *_REPLACEMENTS]))
    if change == "drop":
        return None
    if change == "junk":
        return {**tensor, draw(hostile_text): draw(json_value)}
    return {**tensor, change: draw(_REPLACEMENTS[change])}


@st.composite
def v2_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A request for the wine classifier with up to three things wrong in its tensors (none in
    about two fifths), and in about half hostile request-level fields beside them."""
    rows = draw(st.integers(0, 5))
    data = draw(st.lists(st.floats(0, 100, width=32), min_size=rows, max_size=rows))
    tensors: list[dict[str, Any]] = wine_tensors(rows, data)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        index = draw(st.integers(0, len(tensors) - 1)) if tensors else None
        if index is not None:
            mutated = _mutate(draw, tensors[index])
            tensors[index : index + 1] = [] if mutated is None else [mutated]
    outputs = st.lists(
        st.fixed_dictionaries(
            {"name": st.one_of(st.sampled_from(["label", "probabilities"]), hostile_text)},
            optional={"parameters": st.one_of(json_value, st.just({"binary_data": True}))},
        ),
        max_size=3,
    )
    extras = st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(hostile_text, json_value),
            "parameters": st.one_of(json_value, st.just({"binary_data_output": True})),
            "outputs": st.one_of(outputs, json_value),
        },
    )
    return {"inputs": tensors, **draw(st.one_of(st.just({}), extras))}


@st.composite
def v2_binary_requests(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    """A request with binary tensors, as tritonclient sends it, and the header length it
    declares: the true one, or a lie."""
    rows = draw(st.integers(0, 5))
    datatype = draw(st.sampled_from(["FP32", "FP32", "FP64", "INT8", "BOOL", "BYTES"]))
    tensors, blobs = [], []
    for name in draw(st.lists(st.sampled_from(WINE_FEATURES), max_size=13, unique=True)):
        if datatype == "BYTES":
            texts = draw(st.lists(st.binary(max_size=6), min_size=rows, max_size=rows))
            blob = b"".join(struct.pack("<I", len(text)) + text for text in texts)
        else:
            blob = draw(st.binary(min_size=0, max_size=8 * rows + 2))
            if draw(st.booleans()):
                blob = np.zeros(rows, dtype=datatype.lower().replace("fp", "float")).tobytes()
        size = draw(st.one_of(st.just(len(blob)), st.integers(-2, 64)))
        tensors.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [rows],
                "parameters": {"binary_data_size": size},
            }
        )
        blobs.append(blob)
    header = json_bytes({"inputs": tensors, **draw(st.sampled_from([{}, {"outputs": []}]))})
    body = header + b"".join(blobs) + draw(st.sampled_from([b"", b"\x00", b"trailing"]))
    declared = draw(
        st.one_of(
            st.just(str(len(header)).encode()),
            st.integers(-3, len(body) + 3).map(lambda n: str(n).encode()),
            st.sampled_from([b"", b" 12", b"+12", b"1_2", b"\xb2", b"9" * 5000, b"1e3"]),
        )
    )
    return body, declared


UNPARSEABLE_V2 = [
    b"",
    b"{",
    b'{"inputs": [{"name": "alcohol", "datatype": "FP32", "shape": [1], "data": [1',
    b'{"inputs": [{"name": "alcohol", "datatype": "FP32", "shape": [1], "data": [1e999]}]}',
    b'{"inputs": [{"name": "alcohol", "datatype": "INT64", "shape": [1], "data": [' + b"9" * 5000,
    b'{"inputs": [{"name": "alcohol", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
    b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [-0]}]}',
    b'{"inputs": ' + nested_json(1000) + b"}",
    b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": '
    + nested_json(1000)
    + b"}]}",
    nested_json(1000, "{", "}"),
    nested_json(100_000),
    b"[]",
    b'"inputs"',
    b"null",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
]
"""Bodies that are not JSON, or JSON no request can be: truncated, nested 1,000 and 100,000
deep, numbers no float or int64 holds, NaN, a byte-order mark, UTF-16."""

v2_documents_as_json = st.tuples(
    st.builds(json_bytes, v2_documents(), escape=st.booleans()),
    st.one_of(st.none(), st.none(), st.none(), st.sampled_from([b"0", b"5", b"-1", b"\xb2"])),
)
v2_payloads: st.SearchStrategy[tuple[bytes, bytes | None]] = st.one_of(
    v2_documents_as_json,
    v2_documents_as_json,
    v2_binary_requests(),
    st.one_of(
        st.tuples(st.sampled_from(UNPARSEABLE_V2), st.none()),
        st.tuples(st.binary(max_size=300), st.none()),
        st.tuples(st.builds(lambda document: json_bytes(document)[:-7], v2_documents()), st.none()),
        st.tuples(st.builds(gzip_bomb, st.just(b"{" * 64), st.just(40_000)), st.none()),
    ),
)
"""(body, Inference-Header-Content-Length or None) for `/infer`: mostly JSON documents with a
few things wrong, then binary tensors, then bodies that are no request at all."""

# Dataset files ------------------------------------------------------------------------------------

cells = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    hostile_text,
    st.sampled_from(["", '"', '""', "a,b", "\r", "\n", "NaN", "null", "1e999", "\x00"]),
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """Rows of hostile cells, joined with a delimiter, in some encoding (or none that fits)."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(cells, min_size=width, max_size=width), min_size=1, max_size=6))
    if draw(st.booleans()):  # ragged
        rows.append(draw(st.lists(cells, max_size=6)))
    text = "\n".join(delimiter.join(row) for row in rows) + draw(st.sampled_from(["", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"]))
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf-") else "replace")


@st.composite
def parquet_files(draw: st.DrawFn) -> bytes:
    names = draw(
        st.lists(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
            min_size=1,
            max_size=3,
        )
    )
    rows = draw(st.integers(0, 4))
    table = pa.table({f"{index}{name}": list(range(rows)) for index, name in enumerate(names)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    whole = sink.getvalue()
    return draw(st.sampled_from([whole, whole[: len(whole) // 2], whole[:4] + whole[-8:]]))


dataset_files = st.one_of(csv_files(), csv_files(), parquet_files())
"""Files in a format the upload reads, with hostile content."""


def hostile_files(limit: int) -> st.SearchStrategy[bytes]:
    """Bodies that are no dataset file: random bytes, nothing, compression bombs (never to be
    inflated: the server takes the body as the file it is), one just over the size limit."""
    return st.one_of(
        st.binary(max_size=300),
        st.just(b""),
        st.builds(gzip_bomb, st.just(b"a,b\n1,2\n"), st.just(500_000)),
        st.builds(deflate_bomb, st.just(b"a,b\n1,2\n"), st.just(500_000)),
        st.just(b"a,b\n" + b"1,2\n" * (limit // 4)),
    )

"""The requests of the REST fuzz (tests/rest/test_rest_fuzz.py), as Hypothesis strategies: for
the V2 inference routes, the dataset upload, and the probes, `/metrics` and paths no route has.

Each request keeps most of its parts valid and makes a few hostile (`hostile_http.aspects`), so
that most examples get past the first check to the code behind it. The caller's token is passed
in: with it, the credentials are valid unless the example makes them hostile.
"""

from __future__ import annotations

from hypothesis import strategies as st

from hostile_http import (
    HostileRequest,
    aspects,
    content_encodings,
    content_types,
    framed,
    header_values,
    percent_encoded,
    query_string,
    query_values,
    segments,
)
from raw_http import Header
from rest_fuzz_bodies import dataset_files, hostile_files, v2_payloads

LIMIT = 64 * 1024
"""The server's limit on inference and upload bodies: small, so that passing it is cheap."""
SLUG = "fuzz"
DEPLOYMENT = "wine"
MODEL = f"{SLUG}.{DEPLOYMENT}"
INFER_PATHS = [f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer"]
ANY_METHOD = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]


# Headers every route gets --------------------------------------------------------------------


def common_headers(token: bytes, *types: str) -> st.SearchStrategy[list[Header]]:
    """Host, valid credentials, and one of the route's content `types` (or none); then, in
    about half the examples, up to three of them (or of content encoding, request id, Expect
    and an extra header) hostile. Fewer hostile headers at once let more examples past the
    HTTP parser, to the route."""
    valid = b"Bearer " + token
    token_characters = "abcdefghijklmnopqrstuvwxyz-_.!#$%&'*+^`|~"
    hostile: dict[bytes, st.SearchStrategy[bytes | None]] = {
        b"host": st.one_of(st.none(), header_values),
        b"authorization": st.one_of(
            st.none(),
            st.sampled_from([b"Bearer", b"Bearer ", b"Basic YTpi", valid + b"x", valid.lower()]),
            header_values.map(lambda value: b"Bearer " + value),
        ),
        b"content-type": content_types(*types),
        b"content-encoding": content_encodings,
        b"x-request-id": header_values,
        b"expect": st.sampled_from([b"100-continue", b"bogus"]),
        b"": st.none(),  # an extra header, named below
    }
    which: st.SearchStrategy[set[bytes]] = st.one_of(
        st.just(set()), st.sets(st.sampled_from(list(hostile)), max_size=3)
    )

    @st.composite
    def build(draw: st.DrawFn) -> list[Header]:
        headers: dict[bytes, bytes | None] = {
            b"host": b"fuzz.test",
            b"authorization": valid,
            b"content-type": draw(st.sampled_from([None, *(t.encode() for t in types)])),
        }
        for name in sorted(draw(which)):
            if name:
                headers[name] = draw(hostile[name])
            else:
                extra = draw(st.text(token_characters, min_size=1, max_size=20)).encode()
                headers[extra] = draw(header_values)
        return [(name, value) for name, value in headers.items() if value is not None]

    return build()


# V2 inference --------------------------------------------------------------------------------

NAME_SEPARATORS = [b".", b"%2e", b"%2E", b"%00", b"", b"..", b"%2f", b"%2e%2e"]
VERSIONS = [b"1", b"2", b"0", b"01", b"-1", b"%D9%A3", b"1" * 12, b"%31"]
V2_TYPES = ("application/json", "application/octet-stream")


def v2_model_paths() -> st.SearchStrategy[bytes]:
    """`/v2/models/...`: the real model's name, or its parts around a hostile separator, or a
    hostile name; then any of the model routes, a version (often hostile) and junk."""
    name = st.one_of(
        st.just(MODEL.encode()),
        st.builds(
            lambda slug, separator, deployment: slug + separator + deployment,
            st.one_of(st.just(SLUG.encode()), segments(SLUG)),
            st.sampled_from(NAME_SEPARATORS),
            st.one_of(st.just(DEPLOYMENT.encode()), segments(DEPLOYMENT)),
        ),
        segments(MODEL),
    )
    version = st.one_of(st.sampled_from(VERSIONS), segments("1"))
    suffix = st.one_of(
        st.sampled_from([b"", b"/ready", b"/infer", b"/", b"/infer/", b"/versions"]),
        st.builds(
            lambda number, route: b"/versions/" + number + route,
            version,
            st.sampled_from([b"", b"/ready", b"/infer"]),
        ),
    )
    query = st.sampled_from([b"", b"", b"?x=1", b"?%00=%ED%A0%80", b"?" + b"a=1&" * 500])
    return st.builds(lambda n, s, q: b"/v2/models/" + n + s + q, name, suffix, query)


@st.composite
def v2_requests(draw: st.DrawFn, token: bytes, hostile_paths: bool) -> HostileRequest:
    """A V2 request: to the real model's infer route, with a hostile body (`hostile_paths`
    False); or to any model path, with any method."""
    broken = draw(aspects("method", "framing"))
    body, declared = draw(v2_payloads)
    headers = draw(common_headers(token, *V2_TYPES))
    if declared is not None:
        headers.append((b"inference-header-content-length", declared))
    if hostile_paths:
        target = draw(v2_model_paths())
    else:
        target = draw(st.sampled_from(INFER_PATHS)).encode()
    method = draw(st.sampled_from(ANY_METHOD)) if "method" in broken else "POST"
    return draw(
        framed(method, target, headers, body, length_limit=LIMIT, hostile="framing" in broken)
    )


# Dataset uploads -----------------------------------------------------------------------------

descriptions = st.one_of(
    st.text(max_size=30).map(percent_encoded),
    st.sampled_from([b"%ED%A0%80", b"%C0%80", b"%FF", b"%", b"%zz", b"+", b"%0D%0A"]),
    st.builds(lambda count: b"%C3%A9" * count, st.sampled_from([10, 5000, 12_000])),
)
PLAIN_UPLOAD_OPTIONS = {
    "format": st.sampled_from([b"csv", b"parquet"]),
    "encoding": st.sampled_from(
        [b"utf-8", b"latin-1", b"cp1252", b"shift_jis", b"gb18030", b"utf-16", b"utf-16-le"]
    ),
    "delimiter": st.sampled_from([b"%2C", b"%3B", b"%09", b"%7C"]),
    "header": st.sampled_from([b"true", b"false"]),
    "description": st.text(max_size=30).map(percent_encoded),
}
HOSTILE_UPLOAD_OPTIONS = {
    "format": query_values("csv", "parquet", "CSV", "json"),
    "encoding": query_values(
        "utf-8", "big5", "euc_kr", "cp1252", "rot13", "bz2_codec", "utf-16", "utf-32-be"
    ),
    "delimiter": query_values(",", ";", "\t", "|", '"', "", ",,", "é"),
    "header": query_values("true", "false", "True", "1", ""),
    "description": descriptions,
}
UPLOAD_TYPES = ("text/csv", "application/octet-stream", "application/vnd.apache.parquet")


@st.composite
def upload_requests(draw: st.DrawFn, token: bytes) -> HostileRequest:
    """An upload with up to two of its parts hostile: the project or dataset in the path, the
    path's tail, the query options, the method, the framing, the file."""
    broken = draw(aspects("project", "dataset", "tail", "options", "method", "framing", "file"))
    project = draw(segments(SLUG)) if "project" in broken else SLUG.encode()
    dataset = draw(segments("fz") if "dataset" in broken else st.sampled_from([b"fz", b"fz-2"]))
    tails = [b"/versions/", b"", b"/versions/1", b"/versions%2f", b"/versions/.."]
    tails += [b"/versions/1/data", b"/versions/%00/data", b"/versions/1e3/data"]  # the download
    tail = draw(st.sampled_from(tails)) if "tail" in broken else b"/versions"
    options = HOSTILE_UPLOAD_OPTIONS if "options" in broken else PLAIN_UPLOAD_OPTIONS
    query = draw(query_string(options))
    target = b"/v1/projects/" + project + b"/datasets/" + dataset + tail + query
    method = draw(st.sampled_from(ANY_METHOD)) if "method" in broken else "POST"
    body = draw(hostile_files(LIMIT) if "file" in broken else dataset_files)
    headers = draw(common_headers(token, *UPLOAD_TYPES))
    return draw(
        framed(method, target, headers, body, length_limit=LIMIT, hostile="framing" in broken)
    )


# Probes, metrics, and paths no route has -----------------------------------------------------

OTHER_PATHS = [
    *(b"/healthz", b"/readyz", b"/metrics", b"/v2", b"/v2/health/live", b"/v2/health/ready"),
    *(b"/", b"/v1", b"/v2/models", b"/v2/health", b"/%2e%2e/healthz", b"/healthz/.."),
]


@st.composite
def other_requests(draw: st.DrawFn, token: bytes) -> HostileRequest:
    broken = draw(aspects("tail", "method", "framing", "body", "cors"))
    target = draw(st.sampled_from(OTHER_PATHS))
    if "tail" in broken:
        tails = st.sampled_from([b"/", b"?", b"?a=%00", b"%00", b"/..", b"%2f", b"%2e"])
        target += draw(st.one_of(tails, segments().map(lambda segment: b"/" + segment)))
    headers = draw(common_headers(token, "text/plain"))
    accept = [b"application/openmetrics-text; version=1.0.0", b"*/*", b"text/plain"]
    headers.append((b"accept", draw(st.one_of(st.sampled_from(accept), header_values))))
    if "cors" in broken:
        headers += [(b"origin", b"http://evil.test"), (b"access-control-request-method", b"GET")]
    method = draw(st.sampled_from(ANY_METHOD)) if "method" in broken else "GET"
    body = draw(st.binary(min_size=1, max_size=64)) if "body" in broken else b""
    return draw(
        framed(method, target, headers, body, length_limit=LIMIT, hostile="framing" in broken)
    )

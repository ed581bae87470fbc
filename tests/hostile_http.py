"""Hypothesis strategies for hostile HTTP/1.1 requests, as the bytes a hostile client writes.

The parts any route gets: path segments and query strings as they appear on the request line
(percent-encoded or not), header values a client library would refuse to send, and every way to
tell, or lie about, a body's length. `HostileRequest.wire` puts them together for
`raw_http.exchange`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from raw_http import Header, request_bytes

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
SPECIAL_CHARACTERS = ["\x00", *SURROGATES, "\ufffe", "\U0010ffff", "\u202e", "é", "'", '"', "\\"]
hostile_text = st.text(
    st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARACTERS)), min_size=1, max_size=24
)
"""Text with NUL, lone surrogates, bidi overrides and the like, as JSON can carry it."""


def percent_encoded(text: str) -> bytes:
    """`text` percent-encoded as UTF-8, a lone surrogate as the three bytes UTF-8 forbids
    (`\\ud800` as `%ED%A0%80`): what a client that does not check its text sends."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="").encode("ascii")


SEGMENT_TOKENS = [
    *(b"%00", b"%2e", b"%2E", b"%2e%2e", b"..", b".", b"%2f", b"%2F", b"%5c", b"%5C"),
    *(b"%ED%A0%80", b"%ED%BF%BF", b"%C0%AE", b"%C0%80", b"%FF", b"%", b"%zz", b"%2"),
    *(b"%20", b"+", b";", b"%3F", b"%23", b"%0d%0a", b"~", b"%E2%80%AE", b"%F4%90%80%80"),
]
"""Pieces of a path segment that have broken servers: encoded NUL, dots and slashes, overlong
and surrogate UTF-8, broken escapes."""

RAW_SEGMENT_TOKENS = [b"\xff", b"\x00", b"\x7f", b"a b", b"\t", b"#", b"?", b"//"]
"""Bytes written raw on the request line: some the HTTP parser must refuse, others (`#`, `?`,
`//`) change which path the server sees."""


def long_segments(pieces: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda piece, count: piece * count,
        st.sampled_from(pieces),
        st.sampled_from([64, 300, 3000, 20_000]),
    )


def segments(*plain: str) -> st.SearchStrategy[bytes]:
    """A path segment: one of `plain` (real names, so that some requests reach a handler),
    hostile tokens, hostile text, very long runs, and mixtures of them."""
    piece = st.one_of(
        st.sampled_from([name.encode() for name in plain] or [b"x"]),
        st.sampled_from(SEGMENT_TOKENS),
        hostile_text.map(percent_encoded),
    )
    return st.one_of(
        piece,
        st.lists(piece, min_size=2, max_size=4).map(b"".join),
        long_segments([b"a", b"%2e", b"%00", b"%C3%A9", b"%ED%A0%80"]),
        st.sampled_from(RAW_SEGMENT_TOKENS),
    )


def query_string(options: dict[str, st.SearchStrategy[bytes]]) -> st.SearchStrategy[bytes]:
    """Any of `options`, some of them repeated, with hostile keys mixed in; values as written
    on the request line."""
    keys = st.one_of(st.sampled_from(sorted(options)), hostile_text.map(percent_encoded))

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        pairs = []
        for key in draw(st.lists(keys, max_size=6)):
            name = key if isinstance(key, bytes) else key.encode()
            value = draw(options.get(name.decode("ascii"), st.just(b"")))
            pairs.append(name + b"=" + value)
        return b"?" + b"&".join(pairs) if pairs else b""

    return build()


def query_values(*plain: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from([quote(value, safe="").encode() for value in plain]),
        hostile_text.map(percent_encoded),
        st.sampled_from(SEGMENT_TOKENS),
        long_segments([b"x", b"%C3%A9"]),
    )


header_values = st.one_of(
    st.binary(max_size=40).filter(lambda value: b"\r" not in value and b"\n" not in value),
    st.sampled_from([b"", b" ", b"\x00", b"\xb2", b"\xff\xfe", b"\x7f", b'()<>@,;:\\"/[]?={}']),
    st.builds(lambda count: b"x" * count, st.sampled_from([1000, 9000, 60_000])),
)
"""Header values a client library would not send; never CR or LF, which would end the header
and make the example about something else."""


def content_types(*plain: str) -> st.SearchStrategy[bytes | None]:
    return st.one_of(
        st.none(),
        st.sampled_from([value.encode() for value in plain]),
        st.sampled_from([b"multipart/form-data; boundary=x", b"text/csv; charset=utf-7"]),
        header_values,
    )


content_encodings = st.one_of(
    st.none(),
    st.sampled_from([b"identity", b"gzip", b"deflate", b"br", b"gzip, gzip", b"x-gzip"]),
    header_values,
)


def gzip_bomb(inflated: bytes, repeat: int) -> bytes:
    """`inflated` * `repeat`, gzipped: a few KiB that would inflate into megabytes."""
    return gzip.compress(inflated * repeat, compresslevel=9)


def deflate_bomb(inflated: bytes, repeat: int) -> bytes:
    return zlib.compress(inflated * repeat, level=9)


def nested_json(levels: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * levels + closing * levels).encode()


def json_bytes(document: Any, *, escape: bool = True) -> bytes:
    """`document` as JSON; unescaped, a lone surrogate goes out as the UTF-8 bytes of one."""
    text = json.dumps(document, ensure_ascii=escape)
    return text.encode("utf-8", "surrogatepass")


class Framing(Enum):
    """How the request tells the length of its body, truthfully or not."""

    EXACT = "exact"
    CHUNKED = "chunked"
    SHORTER = "Content-Length shorter than the body: the rest reads as a next request"
    UNFRAMED = "no Content-Length, no Transfer-Encoding, and a body all the same"
    OVER_LIMIT = "Content-Length over the server's limit, the body not sent"
    LONGER_THAN_SENT = "Content-Length longer than what is sent before the client gives up"
    MALFORMED = "a Content-Length no parser should take"


MALFORMED_LENGTHS = [
    [b"-1"],
    [b"abc"],
    [b"1.5"],
    [b"0x10"],
    [b"\xb2"],
    [b"9" * 30],
    [b"+5"],
    [b"5 5"],
    [b""],
    [b"1_0"],
    [b"3", b"4"],
]


@dataclass(frozen=True)
class HostileRequest:
    method: str
    target: bytes
    headers: tuple[Header, ...]
    body: bytes
    framing: Framing
    length_limit: int
    """The server's body limit for this route: where OVER_LIMIT starts."""
    malformed_length: tuple[bytes, ...] = ()
    lie: int = 1
    """How many bytes SHORTER and LONGER_THAN_SENT are off by."""

    @property
    def half_close(self) -> bool:
        """Whether the client ends its side after the request: a client that lied about a
        longer body gives up; one with a malformed length must not keep a parser waiting."""
        return self.framing in (Framing.LONGER_THAN_SENT, Framing.MALFORMED)

    @property
    def answer_expected(self) -> bool:
        """A body shorter than declared cannot be answered once its client has gone."""
        return self.framing is not Framing.LONGER_THAN_SENT

    def wire(self) -> bytes:
        headers = [*self.headers, (b"connection", b"close")]
        body = self.body
        match self.framing:
            case Framing.EXACT:
                headers.append((b"content-length", str(len(body)).encode()))
            case Framing.CHUNKED:
                headers.append((b"transfer-encoding", b"chunked"))
                body = chunked(body)
            case Framing.SHORTER:
                headers.append((b"content-length", str(max(0, len(body) - self.lie)).encode()))
            case Framing.UNFRAMED:
                pass
            case Framing.OVER_LIMIT:
                headers.append((b"content-length", str(self.length_limit + self.lie).encode()))
            case Framing.LONGER_THAN_SENT:
                headers.append((b"content-length", str(len(body) + self.lie).encode()))
            case Framing.MALFORMED:
                headers += [(b"content-length", value) for value in self.malformed_length]
        return request_bytes(self.method, self.target, headers, body)


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[start : start + size] for start in range(0, len(body), size)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return encoded + b"0\r\n\r\n"


def aspects(*names: str, most: int = 2) -> st.SearchStrategy[frozenset[str]]:
    """Which aspects of a request to make hostile: none in about half the examples, else up to
    `most` of `names`. The rest stay valid, so that an example gets past the first check to the
    code behind it, and a failure names its cause."""
    return st.one_of(
        st.just(frozenset()),
        st.frozensets(st.sampled_from(names), min_size=1, max_size=most),
    )


@st.composite
def framed(
    draw: st.DrawFn,
    method: str,
    target: bytes,
    headers: list[Header],
    body: bytes,
    *,
    length_limit: int,
    hostile: bool,
) -> HostileRequest:
    """The request with its body's length told truthfully, or (`hostile`) any other way."""
    others = [framing for framing in Framing if framing is not Framing.EXACT]
    return HostileRequest(
        method=method,
        target=target,
        headers=tuple(headers),
        body=body,
        framing=draw(st.sampled_from(others)) if hostile else Framing.EXACT,
        length_limit=length_limit,
        malformed_length=tuple(draw(st.sampled_from(MALFORMED_LENGTHS))),
        lie=draw(st.sampled_from([1, 2, 100, 10**6])),
    )

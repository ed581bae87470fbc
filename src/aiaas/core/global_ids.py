"""Global ids: the one kind of id every interface answers and accepts.

A global id is `base64url("<Type>:<uuid>")` without padding, such as
`RGF0YXNldFZlcnNpb246...` for a `DatasetVersion`: GraphQL's `node(id:)` takes any of them, and
every argument that names an object takes one of its type. The REST upload answers them too
(with the raw UUID beside, under `uuid`), so that what one interface answers another accepts as
it is.

`read` is where an id given to the API is read. It refuses, with an `InputError` that names
the argument as the schema spells it (`input.datasetVersion`, `ids.2`) and says what it
expected, a raw UUID, an id of another type, and anything that is not a global id. A raw UUID is
refused rather than guessed at: it does not say what it names, and taking it would keep two
kinds of id alive.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from uuid import UUID

from aiaas.core.errors import InputError

ANY_TYPE: tuple[str, ...] = ()
"""For `read`: an id of any type (`node(id:)`)."""

_RAW_UUID_HINTS = {
    "DatasetVersion": "the REST upload answers it as version.id",
    "Dataset": "the REST upload answers it as version.datasetId",
}
"""Where a caller holding a raw UUID finds the global id of the same object."""

_RAW_UUID_HINT = "pass the object's id as the API answers it"

_LONGEST_TYPE_NAME = 64
"""A type name longer than this, decoded from a caller's id, is not repeated back to them."""


def encode(type_name: str, object_id: UUID) -> str:
    """The global id of the object of type `type_name` with the UUID `object_id`."""
    raw = f"{type_name}:{object_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(global_id: str) -> tuple[str, UUID] | None:
    """`(type name, uuid)` of a global id; None for anything that is not one."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        type_name, separator, object_id = text.partition(":")
        if not separator or not type_name.isidentifier():
            return None
        return type_name, UUID(object_id)
    except (ValueError, UnicodeError, binascii.Error):
        return None


def example(type_name: str) -> str:
    """The start of every global id of `type_name`, for messages: `RGF0YXNldFZlcnNpb246...`.
    Cut where the base64 of the type name ends, so that the part shown is the same in all."""
    prefix = f"{type_name}:".encode()
    whole = len(prefix) // 3 * 3
    return base64.urlsafe_b64encode(prefix[:whole]).decode() + "..."


def _is_raw_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _expected(types: Sequence[str]) -> str:
    if not types:
        return f"expected a global id (such as '{example('Project')}')"
    names = " or ".join(types)
    return f"expected {_article(names)} {names} id (a global id such as '{example(types[0])}')"


def _article(name: str) -> str:
    return "an" if name[:1] in ("A", "E", "I", "O", "U") else "a"


def id_problem(global_id: str, types: Sequence[str]) -> str | None:
    """What is wrong with `global_id` as an id of one of `types` (of any type if `types` is
    empty), or None if nothing is."""
    decoded = decode(global_id)
    if decoded is not None and (not types or decoded[0] in types):
        return None
    if decoded is not None and len(decoded[0]) <= _LONGEST_TYPE_NAME:
        got = f"got {_article(decoded[0])} {decoded[0]} id"
    elif decoded is not None:
        got = "got an id of an unknown type"
    elif _is_raw_uuid(global_id.strip()):
        hint = _RAW_UUID_HINTS.get(types[0], _RAW_UUID_HINT) if types else _RAW_UUID_HINT
        got = f"got a raw UUID; {hint}"
    else:
        got = "got text that is not a global id"
    return f"{_expected(types)}, {got}"


def read(global_id: str, types: str | Sequence[str], argument: str) -> tuple[str, UUID]:
    """`(type name, uuid)` of the id given as `argument` (its path as the schema spells it),
    which must name an object of `types` (one type name, several, or `ANY_TYPE`); `InputError`
    naming the argument and what it expected otherwise."""
    accepted = (types,) if isinstance(types, str) else tuple(types)
    problem = id_problem(global_id, accepted)
    if problem is not None:
        raise InputError(f"{argument}: {problem}", field_errors={argument: problem})
    decoded = decode(global_id)
    assert decoded is not None
    return decoded

"""Documents parsed and validated once, then looked up by their text.

A client sends the same few documents over and over (a page, its poll, a form). strawberry's
`ParserCache` keeps each parsed document, keyed by its text and the parse options (so the token
limit still applies), and `ValidationCache` each validation's outcome, keyed by the schema, the
document and the validation rules. Two things stand between those caches and a correct hit:

- strawberry's `ValidationCache` sets the cached outcome whatever an earlier check found, which
  would overwrite `InputChecks`' refusal (it depends on the variables, and runs every time):
  `ValidationUnlessRefused` leaves a refusal as it is.
- `QueryDepthLimiter` and `MaxAliasesLimiter` make new rule classes each time they are made, and
  the schema makes its extensions anew for every request: the cache key would never repeat.
  `document_limits` makes their rules once per schema.

Both caches are bounded LRUs, and only documents up to `MAX_CACHED_DOCUMENT_CHARS` are kept:
anyone may send new text, unauthenticated, and a bound on the entries alone would let 1 MiB
bodies fill them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

DOCUMENT_CACHE_SIZE = 256
"""Parsed, and validated, documents kept (each cache an LRU)."""

MAX_CACHED_DOCUMENT_CHARS = 16 * 1024
"""Longer documents are parsed and validated every time; the portal's, fragments included, are a
few KiB."""


def _cacheable(query: str | None) -> bool:
    return query is not None and len(query) <= MAX_CACHED_DOCUMENT_CHARS


class ParsedDocuments(ParserCache):
    def __init__(self) -> None:
        super().__init__(maxsize=DOCUMENT_CACHE_SIZE)

    def on_parse(self) -> Iterator[None]:
        if _cacheable(self.execution_context.query):
            yield from super().on_parse()
        else:
            yield


class ValidationUnlessRefused(ValidationCache):
    def __init__(self) -> None:
        super().__init__(maxsize=DOCUMENT_CACHE_SIZE)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is None and _cacheable(context.query):
            yield from super().on_validate()
        else:
            yield


def document_limits(max_depth: int, max_aliases: int) -> Callable[[], AddValidationRules]:
    """The depth and alias limits as one extension factory whose rules are the same classes
    for every request."""
    rules = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    return lambda: AddValidationRules(rules)

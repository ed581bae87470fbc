"""Documents are parsed and validated once per text (graphql.document_caches): the second
request of the same document is answered from both caches, and the limits still hold."""

from __future__ import annotations

import pytest
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from aiaas.core.platform import Platform
from aiaas.graphql.document_caches import DOCUMENT_CACHE_SIZE, MAX_CACHED_DOCUMENT_CHARS
from aiaas.graphql.schema import build_schema
from support import subscription_context

PAGE = "query Projects { projects(first: 5) { nodes { slug } } }"


async def test_the_same_document_is_parsed_and_validated_once(
    platform: Platform, admin_token: str
) -> None:
    schema = build_schema(platform)
    parsed, validated = (
        _get_parse_cache(DOCUMENT_CACHE_SIZE),
        _get_validate_cache(DOCUMENT_CACHE_SIZE),
    )
    answers = []
    for request in range(3):
        context = await subscription_context(platform, admin_token, f"cached-{request}")
        parse_hits, validate_hits = parsed.cache_info().hits, validated.cache_info().hits
        result = await schema.execute(PAGE, context_value=context)
        answers.append((result.data, result.errors))
        if request > 0:
            assert parsed.cache_info().hits == parse_hits + 1
            assert validated.cache_info().hits == validate_hits + 1
    assert answers[0][1] is None
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize("padding", [0, MAX_CACHED_DOCUMENT_CHARS])
async def test_a_document_past_the_depth_limit_is_refused_every_time(
    platform: Platform, admin_token: str, padding: int
) -> None:
    """The limits' rules are made once per schema, so they take part in the cache key; a long
    document is never cached and is checked the same."""
    deep = "query Deep { viewer { " * 1 + "projects(first: 1) { nodes { " * 10 + "slug"
    deep += " } }" * 10 + " } }" + " " * padding
    schema = build_schema(platform)
    for request in range(2):
        context = await subscription_context(platform, admin_token, f"deep-{request}")
        result = await schema.execute(deep, context_value=context)
        assert result.errors, result
        assert "exceeds maximum operation depth" in result.errors[0].message

"""Values that no field can store are refused in one place, before any resolver runs (issue 12).

Text with a NUL or a lone surrogate or past the length limit, a DateTime outside the years 1 to
9999 in UTC, JSON nested too deep or too large, numbers out of range, and cursors that decode to
no row's key: each is answered BAD_USER_INPUT naming the field, through real fields, in variables
and in literals; nothing changes, and nothing is INTERNAL. A Hypothesis fuzz over a handful of
root fields then looks for any other way to an unexpected error.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.types import ExecutionResult

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, Mode, build_config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.storable_text import MAX_TEXT_BYTES
from aiaas.graphql.input_checks import MAX_DEPTH, MAX_JSON_BYTES
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.schema import build_schema
from serving_support import register_bytes_as_version, upload, wine_table
from support import new_team, subscription_context

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SLUG = "hostile"


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """A body limit above the largest JSON value, so that the JSON size check is what answers."""
    return build_config({**config.model_dump(), "graphql_max_body_bytes": 4 * MAX_JSON_BYTES})


@dataclass(frozen=True)
class World:
    """Global ids of a real model and dataset in the project `SLUG`."""

    model: str
    dataset: str


@pytest.fixture(scope="module")
async def world(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> World:
    team = await new_team(platform, SLUG, ())
    owner = team.members[ProjectRole.OWNER].principal
    version = await upload(
        platform, owner, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("wine")
    )
    model_version = await register_bytes_as_version(
        platform, owner, version.id, b"not a model", model_name="scorer"
    )
    return World(
        model=to_global_id("Model", model_version.model_id),
        dataset=to_global_id("Dataset", version.dataset_id),
    )


async def post(
    client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST an operation. `json.dumps` escapes what is not ASCII, so a lone surrogate travels as
    `\\ud800`, as a hostile client would send it (httpx's own encoding cannot carry one)."""
    body = json.dumps({"query": query, "variables": variables or {}})
    return await post_raw(client, token, body.encode())


async def post_raw(client: httpx.AsyncClient, token: str, body: bytes) -> tuple[int, Any]:
    response = await client.post(
        "/graphql",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def codes(body: Any) -> list[str | None]:
    errors = body.get("errors", []) if isinstance(body, dict) else []
    return [error.get("extensions", {}).get("code") for error in errors]


def assert_refused(result: tuple[int, dict[str, Any]], field: str) -> str:
    """The request was refused as a whole, BAD_USER_INPUT, naming `field`; returns the
    problem."""
    status, body = result
    assert status == 200, body
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert field in error["extensions"]["fieldErrors"], error
    problem: str = error["extensions"]["fieldErrors"][field]
    return problem


async def state(platform: Platform) -> dict[str, Any]:
    """What a request could change: rows of every table these fields write, and the gates."""
    tables = ("projects", "users", "api_tokens", "datasets", "models", "audit_events")
    async with platform.metadata.acquire() as connection:
        found = {t: await connection.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        found["gates"] = await connection.fetchval(
            "SELECT array_agg(promotion_gates::text) FROM models"
        )
    return found


async def test_a_document_parsed_and_validated_before_still_has_its_values_checked(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    """Documents are parsed and validated once, then looked up (graphql.schema's document
    caches); the values a request carries are checked on every request, and an invalid
    document is refused every time it comes."""
    del world  # the project `SLUG`
    query = "query($slug: String!) { project(slug: $slug) { slug } }"
    invalid = "query { project(slug: 1) { noSuchField } }"
    answers_to_invalid = []
    for _ in range(2):
        status, found = await post_raw(
            client, admin_token, json.dumps({"query": query, "variables": {"slug": SLUG}}).encode()
        )
        assert (status, found) == (200, {"data": {"project": {"slug": SLUG}}})
        with_nul = {"query": query, "variables": {"slug": "a\x00b"}}
        assert_refused(await post_raw(client, admin_token, json.dumps(with_nul).encode()), "slug")
        status, refused = await post_raw(
            client, admin_token, json.dumps({"query": invalid}).encode()
        )
        assert status == 200 and refused["data"] is None
        answers_to_invalid.append(refused)
    first, second = answers_to_invalid
    assert first == second
    assert any("noSuchField" in error["message"] for error in first["errors"]), first


# Text ------------------------------------------------------------------------------------------

HOSTILE_TEXTS = {
    "nul": ("a\x00b", "NUL"),
    "surrogate": ("a\ud800b", "surrogate"),
    "low-surrogate": ("\udfff", "surrogate"),
    "too-long": ("x" * (MAX_TEXT_BYTES + 1), "longer than"),
    # Fewer characters than the limit, more bytes in UTF-8.
    "too-many-bytes": ("é" * (MAX_TEXT_BYTES // 2 + 1), "longer than"),
}

CREATE_PROJECT = """mutation($input: CreateProjectInput!) {
  createProject(input: $input) { __typename } }"""
PROJECT = "query($slug: String!) { project(slug: $slug) { slug } }"
LOGIN = """mutation($username: String!, $password: String!) {
  login(username: $username, password: $password) { __typename } }"""
DATASET = """query($slug: String!, $name: String!) {
  project(slug: $slug) { dataset(name: $name) { name } } }"""
AUDIT = """query($slug: String!, $actor: String, $since: DateTime, $after: String) {
  project(slug: $slug) {
    auditEvents(actor: $actor, since: $since, after: $after) {
      nodes { action } pageInfo { endCursor } } } }"""
CREATE_TOKEN = """mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { __typename } }"""
GATES = """mutation($model: ID!, $gates: JSON!) {
  setModelPromotionGates(model: $model, gates: $gates) {
    __typename ... on InvalidInputError { fieldErrors { field message } } } }"""

Variables = Callable[[World, Any], dict[str, Any]]

TEXT_FIELDS: dict[str, tuple[str, Variables, str]] = {
    "createProject.name": (
        CREATE_PROJECT,
        lambda w, t: {"input": {"slug": "fine-slug", "name": t}},
        "input.name",
    ),
    "createProject.slug": (
        CREATE_PROJECT,
        lambda w, t: {"input": {"slug": t, "name": "Fine"}},
        "input.slug",
    ),
    "project.slug": (PROJECT, lambda w, t: {"slug": t}, "slug"),
    "login.username": (LOGIN, lambda w, t: {"username": t, "password": "wrong"}, "username"),
    "login.password": (LOGIN, lambda w, t: {"username": "admin", "password": t}, "password"),
    "dataset.name": (DATASET, lambda w, t: {"slug": SLUG, "name": t}, "name"),
    "auditEvents.actor": (AUDIT, lambda w, t: {"slug": SLUG, "actor": t}, "actor"),
    "createApiToken.name": (CREATE_TOKEN, lambda w, t: {"input": {"name": t}}, "input.name"),
    "gates.value": (
        GATES,
        lambda w, t: {"model": w.model, "gates": [{"kind": "metric_threshold", "metric": t}]},
        "gates.0.metric",
    ),
    "gates.key": (
        GATES,
        lambda w, t: {"model": w.model, "gates": [{"kind": "metric_threshold", t: 1}]},
        "gates.0",
    ),
}


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=str)
@pytest.mark.parametrize("case", TEXT_FIELDS, ids=str)
async def test_text_the_database_cannot_store_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    admin_token: str,
    platform: Platform,
    world: World,
    case: str,
    text: str,
) -> None:
    query, variables, field = TEXT_FIELDS[case]
    value, problem = HOSTILE_TEXTS[text]
    before = await state(platform)

    result = await post(client, admin_token, query, variables(world, value))

    assert problem in assert_refused(result, field)
    assert await state(platform) == before


LITERALS = {
    "createProject.name": (
        'mutation { createProject(input: {slug: "fine", name: "a\\u0000b"}) { __typename } }',
        "input.name",
        "NUL",
    ),
    "project.slug": (
        'query { project(slug: "LONG") { slug } }'.replace("LONG", "x" * (MAX_TEXT_BYTES + 1)),
        "slug",
        "longer than",
    ),
    "gates": (
        'mutation { setModelPromotionGates(model: "MODEL", gates: [{kind: "x", metric: "\\u0000"}])'
        " { __typename } }",
        "gates.0.metric",
        "NUL",
    ),
    "variable default": (
        'query($slug: String = "\\u0000") { project(slug: $slug) { slug } }',
        "slug",
        "NUL",
    ),
}


@pytest.mark.parametrize("case", LITERALS, ids=str)
async def test_literals_are_checked_like_variables(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, world: World, case: str
) -> None:
    query, field, problem = LITERALS[case]
    before = await state(platform)

    result = await post(client, admin_token, query.replace("MODEL", world.model))

    assert problem in assert_refused(result, field)
    assert await state(platform) == before


async def test_text_at_the_limit_reaches_the_resolver(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    status, body = await post(
        client, admin_token, DATASET, {"slug": SLUG, "name": "é" * (MAX_TEXT_BYTES // 2)}
    )

    assert (status, body) == (200, {"data": {"project": {"dataset": None}}})


# Dates -----------------------------------------------------------------------------------------

OUT_OF_RANGE_DATES = {
    "past 9999 in UTC": ("9999-12-31T23:59:59-23:59", "outside the years"),
    "before 1 in UTC": ("0001-01-01T00:00:00+14:00", "outside the years"),
    "24:00 on the last day": ("9999-12-31T24:00:00Z", "not an ISO 8601"),
}

DATE_FIELDS: dict[str, tuple[str, Variables, str]] = {
    "auditEvents.since": (AUDIT, lambda w, d: {"slug": SLUG, "since": d}, "since"),
    "createApiToken.expiresAt": (
        CREATE_TOKEN,
        lambda w, d: {"input": {"name": "t", "expiresAt": d}},
        "input.expiresAt",
    ),
}


@pytest.mark.parametrize("date", OUT_OF_RANGE_DATES, ids=str)
@pytest.mark.parametrize("case", DATE_FIELDS, ids=str)
async def test_a_datetime_outside_what_postgresql_holds_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    admin_token: str,
    platform: Platform,
    world: World,
    case: str,
    date: str,
) -> None:
    query, variables, field = DATE_FIELDS[case]
    value, problem = OUT_OF_RANGE_DATES[date]
    before = await state(platform)

    assert problem in assert_refused(
        await post(client, admin_token, query, variables(world, value)), field
    )
    literal = (
        f'query {{ project(slug: "{SLUG}") {{ auditEvents(since: "{value}") '
        "{ nodes { action } } } }"
    )
    assert problem in assert_refused(await post(client, admin_token, literal), "since")
    assert await state(platform) == before


@pytest.mark.parametrize(
    "date",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T14:00:00+14:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T00:00:00-23:59",
        "2024-05-01T12:00:00",  # no offset: taken as UTC
    ],
)
async def test_the_first_and_last_instants_reach_postgresql(
    client: httpx.AsyncClient, admin_token: str, world: World, date: str
) -> None:
    status, body = await post(client, admin_token, AUDIT, {"slug": SLUG, "since": date})

    assert status == 200 and "errors" not in body, body
    events = body["data"]["project"]["auditEvents"]["nodes"]
    assert (events == []) == date.startswith("9999")


# Cursors ---------------------------------------------------------------------------------------


def cursor(*parts: Any) -> str:
    """A cursor as `Cursor.encode` makes one, around any parts."""
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


NOW = "2024-05-01T12:00:00+00:00"
BAD_CURSORS = {
    "id 1e22": cursor(NOW, 1e22),
    "id 1e22 as text": cursor(NOW, "10000000000000000000000"),
    "id past bigint": cursor(NOW, str(2**63)),
    "id in words": cursor(NOW, " 12 "),
    "time past 9999 in UTC": cursor("9999-12-31T23:59:59-23:59", "1"),
    "time before 1 in UTC": cursor("0001-01-01T00:00:00+14:00", "1"),
    "time without offset": cursor("2024-05-01T12:00:00", "1"),
    "not a pair": cursor(NOW),
    "too long": "A" * 1000,
    "nested": base64.urlsafe_b64encode(b"[" * 200 + b"]" * 200).decode(),
}


@pytest.mark.parametrize("case", BAD_CURSORS, ids=str)
async def test_a_cursor_that_is_no_row_key_is_refused_naming_after(
    client: httpx.AsyncClient, admin_token: str, world: World, case: str
) -> None:
    status, body = await post(
        client, admin_token, AUDIT, {"slug": SLUG, "after": BAD_CURSORS[case]}
    )

    assert status == 200
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["fieldErrors"] == {"after": "malformed"}


async def test_a_project_cursor_whose_id_is_no_uuid_is_refused(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    query = "query($after: String) { projects(after: $after) { nodes { slug } } }"
    for after in (cursor(NOW, "12"), cursor(NOW, 12), cursor("9999-12-31T23:59:59-23:59", "1")):
        _, body = await post(client, admin_token, query, {"after": after})

        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["fieldErrors"] == {"after": "malformed"}


async def test_real_cursors_and_the_largest_bigint_still_page(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    status, body = await post(client, admin_token, AUDIT, {"slug": SLUG})
    end = body["data"]["project"]["auditEvents"]["pageInfo"]["endCursor"]
    assert end is not None

    for after in (end, cursor(NOW, str(2**63 - 1)), cursor("9999-12-31T23:59:59+00:00", "1")):
        status, body = await post(client, admin_token, AUDIT, {"slug": SLUG, "after": after})

        assert status == 200 and "errors" not in body, body


# JSON and numbers ------------------------------------------------------------------------------


def nested(levels: int) -> Any:
    """`levels` lists nested in one another, the innermost empty."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


PREDICT = """mutation($deployment: ID!, $inputs: [JSON!]!) {
  predict(deployment: $deployment, inputs: $inputs) { __typename } }"""


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 900])
async def test_json_nested_too_deep_is_refused_without_recursion(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, world: World, levels: int
) -> None:
    before = await state(platform)

    gates = await post(client, admin_token, GATES, {"model": world.model, "gates": nested(levels)})
    inputs = await post(
        client, admin_token, PREDICT, {"deployment": world.model, "inputs": [{"x": nested(levels)}]}
    )
    # The same through a literal: graphql-core's parser stops at 200 levels by itself.
    literal = await post(
        client,
        admin_token,
        f'mutation {{ setModelPromotionGates(model: "{world.model}", gates: '
        f"{'[' * 150}{']' * 150}) {{ __typename }} }}",
    )

    assert "nested deeper" in assert_refused(gates, "gates")
    assert "nested deeper" in assert_refused(inputs, "inputs.0")
    assert "nested deeper" in assert_refused(literal, "gates")
    assert await state(platform) == before


async def test_the_probes_variable_nested_1000_deep_is_a_typed_refusal(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    # Whether Python's JSON reader gets through 1,000 levels depends on the stack already in
    # use: the answer is either the body's 400 or the input check's BAD_USER_INPUT.
    raw = json.dumps({"query": GATES, "variables": {"model": world.model, "gates": "DEEP"}})
    deep = raw.replace('"DEEP"', "[" * 1000 + "]" * 1000).encode()

    status, body = await post_raw(client, admin_token, deep)

    assert (status == 400 and "JSON" in body) or codes(body) == ["BAD_USER_INPUT"], body


async def test_json_at_the_depth_limit_reaches_the_resolver(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    status, body = await post(
        client, admin_token, GATES, {"model": world.model, "gates": nested(MAX_DEPTH)}
    )

    assert status == 200 and "errors" not in body, body
    result = body["data"]["setModelPromotionGates"]
    assert result["__typename"] == "InvalidInputError"
    assert result["fieldErrors"] == [{"field": "gates.0", "message": "must be an object"}]


async def test_json_larger_than_the_limit_is_refused(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, world: World
) -> None:
    metric = "m" * (MAX_TEXT_BYTES - 1)
    count = MAX_JSON_BYTES // MAX_TEXT_BYTES + 1
    gates = [{"kind": "metric_threshold", "metric": metric, "min": 0.5}] * count
    before = await state(platform)

    result = await post(client, admin_token, GATES, {"model": world.model, "gates": gates})

    assert "larger than" in assert_refused(result, "gates")
    assert await state(platform) == before


NUMBERS = {
    # Python's json reads these as floats that are not finite: no JSON document holds them.
    "1e999": ("1e999", "not a finite number"),
    "NaN": ("NaN", "not a finite number"),
    "-Infinity": ("-Infinity", "not a finite number"),
    "2**64": (str(2**64), "64-bit"),
}


@pytest.mark.parametrize("case", NUMBERS, ids=str)
async def test_json_numbers_no_document_holds_are_refused(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, world: World, case: str
) -> None:
    number, problem = NUMBERS[case]
    # Written out by hand, each number as a client would write it: 1e999 is no Python float.
    body = (
        '{"query": QUERY, "variables": {"model": "MODEL", "gates": '
        '[{"kind": "metric_threshold", "metric": "f1", "min": NUMBER}]}}'
    )
    for name, value in (("QUERY", json.dumps(GATES)), ("MODEL", world.model), ("NUMBER", number)):
        body = body.replace(name, value)
    before = await state(platform)

    result = await post_raw(client, admin_token, body.encode())

    assert problem in assert_refused(result, "gates.0.min")
    assert await state(platform) == before


async def test_number_literals_out_of_range_are_refused(
    client: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    # int() gives up on 4300 digits, and a float literal may be infinite.
    long_int = "query { projects(first: DIGITS) { nodes { slug } } }".replace("DIGITS", "1" * 5000)
    infinite = (
        'mutation { createDeployment(input: {name: "d", model: "MODEL", alias: "a", '
        "maxWaitMs: 1e999}) { __typename } }"
    ).replace("MODEL", world.model)

    assert "64-bit" in assert_refused(await post(client, admin_token, long_int), "first")
    assert "finite" in assert_refused(await post(client, admin_token, infinite), "input.maxWaitMs")


# Request bodies --------------------------------------------------------------------------------

UNREADABLE_BODIES = {
    "nested 100,000 deep": b'{"query": "{ health { status } }", "variables": {"j": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "an integer of 5,000 digits": b'{"query": "{ health { status } }", "variables": {"j": '
    + b"1" * 5000
    + b"}}",
    "not UTF-8": b'{"query": "{ health { status } }", "variables": {"j": "\xff\xfe"}}',
}


@pytest.mark.parametrize("case", UNREADABLE_BODIES, ids=str)
async def test_a_body_json_cannot_read_is_a_400_not_a_500(
    client: httpx.AsyncClient, admin_token: str, case: str
) -> None:
    status, body = await post_raw(client, admin_token, UNREADABLE_BODIES[case])

    assert status == 400, body
    assert "JSON" in body


# Production and subscriptions ------------------------------------------------------------------


@pytest.fixture(scope="module")
async def production(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The same database behind a production app, whose unexpected errors are masked INTERNAL."""
    platform = create_platform(config.model_copy(update={"mode": Mode.PRODUCTION}))
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield client
    finally:
        await platform.stop()


async def test_production_answers_bad_user_input_too(
    production: httpx.AsyncClient, admin_token: str, world: World
) -> None:
    answers = [
        await post(
            production, admin_token, CREATE_PROJECT, {"input": {"slug": "s", "name": "\x00"}}
        ),
        await post(
            production, admin_token, AUDIT, {"slug": SLUG, "since": "0001-01-01T00:00:00+01:00"}
        ),
        await post(production, admin_token, GATES, {"model": world.model, "gates": nested(900)}),
        await post(production, admin_token, AUDIT, {"slug": SLUG, "after": BAD_CURSORS["id 1e22"]}),
    ]

    assert [codes(body) for _, body in answers] == [["BAD_USER_INPUT"]] * len(answers)


async def test_a_subscription_is_checked_like_the_rest(
    platform: Platform, admin_token: str
) -> None:
    context = await subscription_context(platform, admin_token, "hostile-subscription")
    document = "subscription($id: ID!) { jobEvents(jobId: $id) { cursor } }"

    results = await build_schema(platform).subscribe(document, {"id": "a\x00b"}, context)
    assert not isinstance(results, ExecutionResult)
    result = await anext(results)
    await results.aclose()

    [error] = result.errors or []
    assert error.extensions is not None and error.extensions["code"] == "BAD_USER_INPUT"
    assert error.extensions["fieldErrors"] == {"id": "contains a NUL character (U+0000)"}


# The fuzz --------------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("AIAAS_FUZZ_EXAMPLES", "60"))
"""Examples per run: a fixed budget in the default suite, more with AIAAS_FUZZ_EXAMPLES."""

SPECIAL = st.sampled_from(
    ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\U0010ffff", "\u202e", "é", "'"]
)
plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
hostile_text = st.one_of(
    plain_text,
    st.text(alphabet=st.one_of(st.characters(), SPECIAL), max_size=30),
    st.builds(
        lambda chunk, count: chunk * count,
        st.sampled_from(["x", "é", "\U0001f600", "\x00", "\ud800", "(", "[", "a|"]),
        st.sampled_from([100, MAX_TEXT_BYTES // 4, MAX_TEXT_BYTES // 2 + 1, MAX_TEXT_BYTES + 1]),
    ),
)
hostile_datetime = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.one_of(st.sampled_from([1, 2, 9998, 9999]), st.integers(0, 9999)),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from(["", "Z", "+00:00", "+14:00", "-23:59", "+23:59", "+24:00", "-00:01"]),
    ),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    hostile_text,
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
)
hostile_leaf = st.one_of(json_leaf, st.integers(-(2**70), 2**70), st.floats(), hostile_text)
json_value = st.recursive(
    hostile_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
CHECK_KINDS = (
    *("metric_threshold", "range", "allowed_values", "regex", "not_null", "row_count"),
    *("unique", "no_duplicate_rows", "rule", "column_type"),
)
CHECK_FIELDS = {"kind": st.one_of(st.sampled_from(CHECK_KINDS), json_value)}
OPTIONAL_CHECK_FIELDS = {
    key: st.one_of(json_leaf, json_value)
    for key in ("metric", "min", "max", "column", "columns", "values", "pattern", "expression")
} | {"aliases": st.lists(plain_text, max_size=3), "blocking": json_leaf, "dtype": plain_text}
checks = st.lists(st.fixed_dictionaries(CHECK_FIELDS, optional=OPTIONAL_CHECK_FIELDS), max_size=4)
"""Lists shaped like promotion gates and dataset expectations, so that the fuzz reaches the
checks of each kind."""
any_json = st.one_of(checks, json_value, st.integers(1, 1000).map(nested))
hostile_cursor = st.one_of(
    hostile_text,
    st.builds(
        cursor,
        hostile_datetime,
        st.one_of(st.integers(-(2**70), 2**70), st.floats(), hostile_text, st.uuids().map(str)),
    ),
)


LISTINGS = [
    f"{name}(first: $first, after: $after) {{ pageInfo {{ endCursor }} }}"
    for name in ("members", "datasets", "trainingJobs", "models", "deployments")
]
LOOKUPS = [
    "dataset(name: $name) { name }",
    "model(name: $name) { name versionByAlias(alias: $name) { number } }",
    "deployment(name: $name) { name }",
]


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def operation(query: str, **variables: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.just(query), st.fixed_dictionaries(variables))


def fuzz_operations(w: World) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """A root field and hostile variables for it. Each operation has few arguments, and the
    project, dataset and model are mostly real ones, so that most examples reach a resolver."""
    slug = st.one_of(st.just(SLUG), hostile_text)
    name = st.one_of(st.sampled_from(["scorer", "wine", "production"]), hostile_text)
    in_project = "query($slug: String!, %s) { project(slug: $slug) { %s } }"
    events = "auditEvents(%s) { nodes { action details } }"
    return st.one_of(
        operation(
            CREATE_PROJECT,
            input=st.fixed_dictionaries(
                {"slug": hostile_text, "name": hostile_text},
                optional={"description": hostile_text},
            ),
        ),
        operation(PROJECT, slug=slug),
        operation(
            in_project % ("$name: String!", "dataset(name: $name) { name }"),
            slug=slug,
            name=hostile_text,
        ),
        operation(
            in_project
            % ("$actor: String, $action: String", events % "actor: $actor, action: $action"),
            slug=slug,
            actor=optional(hostile_text),
            action=optional(hostile_text),
        ),
        operation(
            in_project
            % ("$since: DateTime, $until: DateTime", events % "since: $since, until: $until"),
            slug=slug,
            since=optional(hostile_datetime),
            until=optional(hostile_datetime),
        ),
        operation(
            in_project % ("$after: String, $first: Int!", events % "first: $first, after: $after"),
            slug=slug,
            after=optional(hostile_cursor),
            first=st.integers(-5, 105),
        ),
        *(
            operation(
                in_project % ("$after: String, $first: Int!", listing),
                slug=slug,
                after=optional(hostile_cursor),
                first=st.integers(-5, 105),
            )
            for listing in LISTINGS
        ),
        *(
            operation(in_project % ("$name: String!", lookup), slug=slug, name=name)
            for lookup in LOOKUPS
        ),
        operation(
            in_project % ("$ids: [ID!]!", "compareTrainingJobs(ids: $ids) { metricNames }"),
            slug=slug,
            ids=st.lists(hostile_text, max_size=3),
        ),
        operation(LOGIN, username=hostile_text, password=hostile_text),
        operation(
            CREATE_TOKEN,
            input=st.fixed_dictionaries(
                {"name": hostile_text}, optional={"expiresAt": optional(hostile_datetime)}
            ),
        ),
        operation(GATES, model=st.one_of(st.just(w.model), hostile_text), gates=any_json),
        operation(
            "mutation($dataset: ID!, $expectations: JSON!) { setDatasetExpectations("
            "dataset: $dataset, expectations: $expectations) { __typename } }",
            dataset=st.just(w.dataset),
            expectations=any_json,
        ),
        operation(
            "query($after: String) { projects(after: $after) { nodes { slug } } }",
            after=hostile_cursor,
        ),
        operation(
            "query($after: String) { users(after: $after) { nodes { username } } }",
            after=hostile_cursor,
        ),
        operation(
            "query($id: ID!) { node(id: $id) { id } }",
            id=st.one_of(
                hostile_text,
                st.builds(
                    to_global_id,
                    st.sampled_from(["Project", "Dataset", "Model", "User", "Job", "Nope", ""]),
                    st.uuids(),
                ),
            ),
        ),
    )


class Unexpected(logging.Handler):
    """The errors aiaas logs as unexpected while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def unexpected_errors() -> Iterator[Unexpected]:
    handler = Unexpected()
    logger = logging.getLogger("aiaas")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_hostile_arguments_never_get_an_internal_error(
    app: Any, admin_token: str, world: World, data: st.DataObject
) -> None:
    query, variables = data.draw(fuzz_operations(world))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        with unexpected_errors() as logged:
            status, body = await post(client, admin_token, query, variables)
        health = await post(client, admin_token, "{ health { status } }")

    assert status < 500, body
    assert "INTERNAL" not in codes(body), body
    assert not logged.records, [record.getMessage() for record in logged.records]
    assert health == (200, {"data": {"health": {"status": "ok"}}})

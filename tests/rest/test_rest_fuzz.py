"""A property-based fuzz of the REST routes against a real `aiaas serve` (uvicorn).

Every REST route gets hostile requests written as raw bytes (`raw_http`), so that nothing is
tidied up on the way: path segments with encoded NUL, dots, slashes and surrogates, query
options repeated and hostile, headers no client library sends, bodies whose length is told
truthfully, chunked, or as a lie, and bodies of every shape. The routes: the V2 inference
protocol (health, server and model metadata, readiness, infer in JSON and with binary tensors),
the dataset upload, `/metrics` and the probes.

For every example: an answer arrives (unless the client itself gave up on a body it said was
longer), it is no 5xx, an app's 4xx is JSON with a code, and the server logged no traceback.
Then, at the end, the server still serves an ordinary request and its whole log is clean.

Each bug the fuzz found is also kept as an explicit example, so that it stays fixed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.serving import deployments
from aiaas.portal import NOT_BUILT
from hostile_http import Framing, HostileRequest, gzip_bomb, json_bytes
from raw_http import Header, RawResponse, exchange
from rest_fuzz_requests import (
    DEPLOYMENT,
    INFER_PATHS,
    LIMIT,
    MODEL,
    SLUG,
    other_requests,
    upload_requests,
    v2_requests,
)
from server_log import ServerLog
from serving_support import train_version, upload, wine_table
from support import (
    RunningServer,
    Team,
    new_team,
    poll_until,
    running_server,
    server_environment,
    wait_until_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FUZZ_EXAMPLES = int(os.environ.get("AIAAS_FUZZ_EXAMPLES", "60"))
"""Examples per fuzzed route family: a fixed budget in the default suite, more with
AIAAS_FUZZ_EXAMPLES."""
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@dataclass(frozen=True)
class Served:
    server: RunningServer
    log: ServerLog
    team: Team

    @property
    def token(self) -> bytes:
        return self.team.token(ProjectRole.OWNER).encode()


@pytest.fixture(scope="module")
async def served(
    config: Config, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """A server with the wine classifier deployed as `fuzz.wine`. The model trains here while
    the server starts; the server rolls the deployment out as soon as it is created."""
    environment = server_environment(
        config,
        # The artifact store is in the data dir: the server loads the model trained here.
        AIAAS_DATA_DIR=str(config.data_dir),
        AIAAS_INFERENCE_MAX_REQUEST_BYTES=str(LIMIT),
        AIAAS_UPLOAD_MAX_BYTES=str(LIMIT),
        AIAAS_DEPLOYMENT_POLL_INTERVAL_S="0.2",
    )
    log_path = tmp_path_factory.mktemp("server") / "serve.log"
    with running_server(environment, log_path) as server:
        team = await new_team(platform, SLUG, (ProjectRole.DEVELOPER,))
        developer = team.members[ProjectRole.DEVELOPER].principal
        wine = await upload(
            platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
        )
        version = await train_version(
            platform, developer, wine, target="cultivar", model_name="wine"
        )
        await deployments.create_deployment(
            platform,
            developer,
            deployments.NewDeployment(
                name=DEPLOYMENT,
                version_id=version.id,
                batching=deployments.Batching(max_batch_size=4),
            ),
        )
        await wait_until_ready(server, timeout_s=60)
        served = Served(server=server, log=ServerLog(log_path), team=team)

        async def model_ready() -> bool:
            answer = await get(served, f"/v2/models/{MODEL}/ready")
            return answer is not None and answer.status == 200

        assert await poll_until(model_ready, timeout_s=60) is not None, served.log.text()
        yield served


# Sending and judging -------------------------------------------------------------------------


def error_code(body: Any) -> Any:
    """The code of an error body: V2's `{"error": message, "code": ...}` or the REST routes'
    `{"error": {"code": ..., "message": ...}}`."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else body.get("code")


def framework_refusal(response: RawResponse) -> bool:
    """Starlette's own plain-text refusals, given before any route of ours runs: the router's
    for a path no route matches or a method the route does not take, and the CORS middleware's
    for a preflight from an origin not allowed (see the report: JSON for these is app.py's)."""
    return (response.status, response.body) in {
        (404, b"Not Found"),
        (405, b"Method Not Allowed"),
    } or (response.status == 400 and response.body.startswith(b"Disallowed CORS "))


def portal_not_built(response: RawResponse) -> bool:
    """The web portal's page in a checkout whose bundle was never built: a 503 by design, that
    says how to build it (a GET of any path outside the API's is the portal's)."""
    return response.status == 503 and response.body == NOT_BUILT.encode()


def assert_answered_well(method: str, response: RawResponse) -> None:
    summary = f"{response.status} {response.headers} {response.body[:500]!r}"
    if portal_not_built(response):
        return
    assert response.status < 500, summary
    if response.status < 400 or not response.from_the_app or method == "HEAD":
        return  # the HTTP parser's own refusal is plain text, and HEAD has no body
    if framework_refusal(response):
        return
    assert response.header("content-type") == "application/json", summary
    body = response.json()
    if isinstance(body, dict) and body.get("ready") is False:
        return  # V2 readiness: the protocol's 400 for "not ready", not an error
    code = error_code(body)
    assert isinstance(code, str) and code, summary


async def send(served: Served, request: HostileRequest) -> RawResponse | None:
    """Send `request` as written; check the answer, and what the server logged meanwhile."""
    mark = served.log.mark()
    response, received = await exchange(
        served.server.port, request.wire(), half_close=request.half_close
    )
    if request.answer_expected:
        assert response is not None, f"no answer, the connection dropped: {received[:300]!r}"
    if response is not None:
        assert_answered_well(request.method, response)
    assert served.log.problems(since=mark) == []
    return response


def authorized(served: Served, *headers: Header) -> tuple[Header, ...]:
    return ((b"host", b"fuzz.test"), (b"authorization", b"Bearer " + served.token), *headers)


def plain(
    served: Served, method: str, target: bytes, body: bytes = b"", *headers: Header
) -> HostileRequest:
    """A request with valid credentials and a true Content-Length."""
    return HostileRequest(method, target, authorized(served, *headers), body, Framing.EXACT, LIMIT)


async def get(served: Served, path: str) -> RawResponse | None:
    return await send(served, plain(served, "GET", path.encode()))


# Fuzz ------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
async def test_v2_infer_answers_any_body_below_500(served: Served, data: st.DataObject) -> None:
    await send(served, data.draw(v2_requests(served.token, hostile_paths=False)))


@FUZZ
@given(data=st.data())
async def test_v2_paths_answer_any_name_version_and_method_below_500(
    served: Served, data: st.DataObject
) -> None:
    await send(served, data.draw(v2_requests(served.token, hostile_paths=True)))


@FUZZ
@given(data=st.data())
async def test_the_upload_answers_any_path_options_and_file_below_500(
    served: Served, data: st.DataObject
) -> None:
    await send(served, data.draw(upload_requests(served.token)))


@FUZZ
@given(data=st.data())
async def test_probes_metrics_and_unknown_paths_answer_below_500(
    served: Served, data: st.DataObject
) -> None:
    await send(served, data.draw(other_requests(served.token)))


# Explicit examples ---------------------------------------------------------------------------


def wine_request(rows: int) -> dict[str, Any]:
    table = wine_table().drop_columns(["cultivar"]).slice(0, rows)
    return {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": [rows], "data": column.to_pylist()}
            for name, column in zip(table.column_names, table.columns, strict=True)
        ]
    }


async def post_json(served: Served, target: str, document: Any) -> RawResponse:
    response = await send(served, plain(served, "POST", target.encode(), json_bytes(document)))
    assert response is not None
    return response


def refusal(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:500])
    body: dict[str, Any] = response.json()
    assert error_code(body) == code, body
    return body


async def test_a_nul_after_the_model_name_is_not_found(served: Served) -> None:
    response = await post_json(served, f"/v2/models/{MODEL}%00/infer", wine_request(1))

    refusal(response, 404, "NOT_FOUND")


async def test_an_encoded_dot_in_the_model_name_gets_an_answer_not_a_dropped_connection(
    served: Served,
) -> None:
    # Sent as written: the server decodes %2e to ".", which RFC 3986 (2.3) makes the same
    # name, so the request reaches the model, and its empty request is the model's 400.
    response = await post_json(served, f"/v2/models/{SLUG}%2e{DEPLOYMENT}/infer", {})
    dots = await post_json(served, f"/v2/models/{SLUG}%2e%2e{DEPLOYMENT}/infer", wine_request(1))

    assert "inputs" in refusal(response, 400, "BAD_USER_INPUT")["fieldErrors"]
    refusal(dots, 404, "NOT_FOUND")


SPANNING_SHAPE = [2147483647, 2147483647, 0]
"""Zero elements, but numpy cannot shape even an empty array with these dimensions."""


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
async def test_a_shape_whose_dimensions_multiply_past_what_numpy_indexes_is_400(
    served: Served, binary: bool
) -> None:
    tensor: dict[str, Any] = {"name": "alcohol", "datatype": "FP32", "shape": SPANNING_SHAPE}
    headers: list[Header] = []
    if binary:
        tensor["parameters"] = {"binary_data_size": 0}
        body = json_bytes({"inputs": [tensor]})
        headers.append((b"inference-header-content-length", str(len(body)).encode()))
    else:
        body = json_bytes({"inputs": [{**tensor, "data": []}]})

    response = await send(served, plain(served, "POST", INFER_PATHS[0].encode(), body, *headers))

    assert response is not None
    problems = refusal(response, 400, "BAD_USER_INPUT")["fieldErrors"]
    assert "spans more than" in problems["alcohol"], problems


async def test_an_input_named_with_a_lone_surrogate_is_named_back_in_the_400(
    served: Served,
) -> None:
    # JSON carries "\ud800", UTF-8 cannot: the refusal used to fail to encode, a 500.
    document = {"inputs": [{"name": "x\ud800", "datatype": "FP32", "shape": "x", "data": [1]}]}

    response = await post_json(served, INFER_PATHS[0], document)

    assert set(refusal(response, 400, "BAD_USER_INPUT")["fieldErrors"]) == {"x\ud800"}


async def test_a_binary_header_length_of_5000_digits_is_400(served: Served) -> None:
    # int() refuses more than 4,300 digits with a ValueError: it used to be a 500.
    header = (b"inference-header-content-length", b"9" * 5000)
    body = json_bytes(wine_request(1))

    response = await send(served, plain(served, "POST", INFER_PATHS[0].encode(), body, header))

    assert response is not None
    problems = refusal(response, 400, "BAD_USER_INPUT")["fieldErrors"]
    assert set(problems) == {"Inference-Header-Content-Length"}


@pytest.mark.parametrize("route", ["infer", "upload"])
async def test_a_client_that_gives_up_on_a_body_it_declared_longer_leaves_no_traceback(
    served: Served, route: str
) -> None:
    target = INFER_PATHS[0] if route == "infer" else f"/v1/projects/{SLUG}/datasets/fz/versions"
    request = HostileRequest(
        "POST", target.encode(), authorized(served), b"a,b\n", Framing.LONGER_THAN_SENT, LIMIT
    )
    mark = served.log.mark()

    await send(served, request)

    # The server learns of the disconnect after the connection is gone: wait for its word.
    async def noted() -> bool:
        return "disconnected before sending its body" in served.log.text(mark)

    assert await poll_until(noted, timeout_s=10) is not None, served.log.text(mark)
    assert served.log.problems(since=mark) == []


async def test_compression_bombs_are_never_inflated(served: Served) -> None:
    # 16 MB of CSV in 16 KiB: inflated, it would pass the 64 KiB limit (413) or be a CSV.
    bomb = gzip_bomb(b"a,b\n" + b"1,2\n" * 4, 500_000)
    assert len(bomb) < LIMIT
    gzipped = (b"content-encoding", b"gzip")
    upload_target = f"/v1/projects/{SLUG}/datasets/bomb/versions?format=csv".encode()

    inferred = await send(served, plain(served, "POST", INFER_PATHS[0].encode(), bomb, gzipped))
    uploaded = await send(served, plain(served, "POST", upload_target, bomb, gzipped))

    assert inferred is not None and uploaded is not None
    assert refusal(inferred, 400, "BAD_USER_INPUT")["fieldErrors"] == {
        "Content-Encoding": "unsupported"
    }
    assert "binary" in refusal(uploaded, 400, "BAD_USER_INPUT")["error"]["message"]


@pytest.mark.parametrize("path", [INFER_PATHS[0], "/graphql"])
async def test_a_content_length_in_digits_that_are_not_ascii_is_400(
    client: httpx.AsyncClient, served: Served, path: str
) -> None:
    # In process: uvicorn's parser refuses "²" itself, but str.isdigit() takes it, and int()
    # does not. Any server that passes it on would have made it a 500.
    headers = {"authorization": f"Bearer {served.token.decode()}", "content-length": b"\xb2"}

    response = await client.post(path, content=b"{}", headers=headers)  # type: ignore[arg-type]

    assert response.status_code == 400, response.text
    assert error_code(response.json()) in {"BAD_USER_INPUT", "BAD_REQUEST"}, response.text


# Bugs the fuzz found in the upload, each kept as an example ---------------------------------

CSV = b"a,b\n1,2\n"
FOUND_UPLOAD_BUGS = {
    "NUL in the description": (
        f"/v1/projects/{SLUG}/datasets/described/versions?description=%00",
        CSV,
    ),
    "NUL in the project slug": ("/v1/projects/fu%00zz/datasets/fz/versions", CSV),
    "UTF-16 declared for a file without a byte-order mark": (
        f"/v1/projects/{SLUG}/datasets/fz/versions?encoding=utf-16",
        b"0.0",
    ),
    "UTF-16-LE declared for an odd number of bytes": (
        f"/v1/projects/{SLUG}/datasets/fz/versions?encoding=utf-16-le",
        b"0.0",
    ),
}


@pytest.mark.parametrize("bug", FOUND_UPLOAD_BUGS)
async def test_the_upload_bugs_the_fuzz_found_are_typed_refusals(served: Served, bug: str) -> None:
    target, body = FOUND_UPLOAD_BUGS[bug]

    response, _ = await exchange(
        served.server.port, plain(served, "POST", target.encode(), body).wire()
    )

    assert response is not None
    assert response.status == 400, (response.status, response.body)
    assert error_code(response.json()) == "BAD_USER_INPUT"


# At the end ------------------------------------------------------------------------------------


async def test_the_server_still_serves_and_logged_no_problem(served: Served) -> None:
    predicted = await post_json(served, INFER_PATHS[0], wine_request(2))
    uploaded = await send(
        served,
        plain(served, "POST", f"/v1/projects/{SLUG}/datasets/last/versions".encode(), CSV),
    )
    health = await get(served, "/healthz")

    assert predicted.status == 200, predicted.body
    outputs = {output["name"]: output for output in predicted.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [2, 3]
    assert uploaded is not None and uploaded.status in (200, 201), uploaded
    assert health is not None and health.status == 200
    assert served.log.problems() == [], served.log.text()[-5000:]

"""The SDK against a real `aiaas serve` and a real `aiaas worker`: projects found and created,
their refusals typed with their field errors; a CSV file, a binary file and a pyarrow Table
uploaded through the REST route as `DatasetVersion` objects, with a progress bar on request;
a version validated by the worker and its quality report read; a file that is neither CSV nor
Parquet refused before anything is sent; an upload interrupted by Ctrl-C leaving no version and
no file on the server; an unreachable server, a refused token and a timeout each one sentence
that names the URL; a training job submitted, followed to its end with a progress bar, resumed
without a gap or a duplicate after its WebSocket is cut, and its loss history a DataFrame."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas
import pyarrow as pa
import pytest
from sklearn.datasets import load_wine

from aiaas.client import AsyncClient, Client, DatasetVersion, TrainingJob
from aiaas.client.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RequestTimeoutError,
    ServerConnectionError,
    ServerUnreachableError,
    UnsupportedFileError,
    raise_for,
)
from aiaas.client.generated.schema_types import JobState
from aiaas.client.uploads import CHUNK_BYTES
from aiaas.core.platform import Platform
from server_watch import Server, walk
from support import (
    free_port,
    new_account,
    poll_until,
)
from upload_files import fresh_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project_slug(client: Client) -> str:
    slug = f"sdk-{uuid.uuid4().hex[:8]}"
    client.create_project(slug, name="SDK")
    return slug


def test_a_project_is_created_and_found_by_its_slug(client: Client, project_slug: str) -> None:
    project = client.project(project_slug)
    assert (project.slug, project.name, project.role) == (project_slug, "SDK", "OWNER")
    assert project.id != project_slug  # a global id, which every id argument takes


async def test_the_async_client_runs_the_same_typed_operations(
    server: Server, admin_token: str, project_slug: str
) -> None:
    async with AsyncClient(server.running.base_url, admin_token) as client:
        found = (await client.api.project(slug=project_slug)).project
        assert found is not None
        assert found.slug == project_slug
        answer = await client.api.create_project(input={"slug": project_slug, "name": "again"})
        with pytest.raises(ConflictError):
            raise_for(answer.create_project)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", admin_token) as client:
        with pytest.raises(ServerUnreachableError):
            await client.api.viewer()


def test_refusals_are_typed_exceptions_with_their_field_errors(
    client: Client, project_slug: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        client.create_project("Not A Slug!")
    assert "slug" in refused.value.field_errors
    assert "slug" in str(refused.value)
    with pytest.raises(ConflictError):
        client.create_project(project_slug)
    with pytest.raises(NotFoundError):
        client.project(f"none-{uuid.uuid4().hex[:8]}")


def test_a_csv_file_is_uploaded_as_a_dataset_version(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(fresh_csv(rows=5))
    version = client.project(project_slug).upload(path, name="rows", progress=False)
    assert isinstance(version, DatasetVersion)
    assert (version.row_count, version.source_format, version.created) == (5, "csv", True)
    assert version.uuid != version.id
    assert len(version.uuid) == 36
    assert [column["name"] for column in version.columns] == ["id", "amount", "label"]
    again = client.project(project_slug).upload(path, name="rows", progress=False)
    assert (again.id, again.created) == (version.id, False)
    # The REST answer's global id is the one GraphQL takes.
    node = client.api.dataset_version(id=version.id).node
    assert node is not None
    assert node.typename__ == "DatasetVersion"


def test_a_pyarrow_table_is_uploaded_as_parquet_and_validated(
    client: Client, project_slug: str
) -> None:
    table = pa.table({"x": list(range(40)), "tag": [uuid.uuid4().hex for _ in range(40)]})
    version = client.project(project_slug).upload(table, name="table", progress=False)
    assert (version.row_count, version.source_format) == (40, "parquet")
    assert version.quality_report is None
    job = version.validate().wait(timeout=120)
    assert job.state is JobState.SUCCEEDED
    report = version.quality_report
    assert report is not None
    assert report.passed is True
    assert 0 <= report.q <= 3


def test_a_pandas_dataframe_is_uploaded_as_parquet(client: Client, project_slug: str) -> None:
    frame = pandas.DataFrame({"x": [1.5, 2.5, None], "tag": [uuid.uuid4().hex, "b", "c"]})
    version = client.project(project_slug).upload(frame, name="frame", progress=False)
    assert (version.row_count, version.source_format) == (3, "parquet")
    assert [column["name"] for column in version.columns] == ["x", "tag"]


def test_the_progress_bar_shows_on_stderr_when_asked(
    client: Client, project_slug: str, capfd: pytest.CaptureFixture[str]
) -> None:
    body = io.BytesIO(fresh_csv(rows=3))
    client.project(project_slug).upload(body, name="progress", progress=True)
    captured = capfd.readouterr()
    assert "uploading" in captured.err
    assert captured.out == ""
    client.project(project_slug).upload(io.BytesIO(fresh_csv(rows=3)), name="quiet", progress=False)
    assert capfd.readouterr().err == ""


def test_a_file_neither_csv_nor_parquet_is_refused_before_anything_is_sent(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    image = tmp_path / "picture.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(UnsupportedFileError, match=r"picture\.png is neither CSV nor Parquet"):
        client.project(project_slug).upload(image, name="picture", progress=False)
    assert client.api.project(slug=project_slug).project is not None
    with pytest.raises(UnsupportedFileError):
        client.project(project_slug).upload(object(), name="picture", progress=False)


class InterruptedFile(io.BytesIO):
    """A CSV whose reading is interrupted (as by Ctrl-C) after `reads` chunks."""

    def __init__(self, content: bytes, reads: int) -> None:
        super().__init__(content)
        self.reads = reads

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:  # past the format sniffing
            self.reads -= 1
            if self.reads < 0:
                raise KeyboardInterrupt
        return super().read(size)


GONE = "the client disconnected before sending its body"


async def dataset_versions(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM dataset_versions")
    return count


async def test_an_upload_interrupted_leaves_no_version_and_no_file(
    client: Client, project_slug: str, server: Server, platform: Platform
) -> None:
    before = await dataset_versions(platform), walk(server.data_dir / "artifacts")
    log_before = server.running.log()
    rows = b"".join(f"{n},{n * 0.5},{uuid.uuid4().hex}\n".encode() for n in range(100_000))
    content = b"id,amount,label\n" + rows
    assert len(content) > 3 * CHUNK_BYTES  # the first chunks reach the server, not the rest
    project = client.project(project_slug)
    with pytest.raises(KeyboardInterrupt):
        project.upload(InterruptedFile(content, reads=2), name="interrupted", progress=False)

    async def stopped() -> bool:
        return GONE in server.running.log().removeprefix(log_before)

    # The server saw the upload begin, and stopped it when the client went.
    assert await poll_until(stopped, timeout_s=30) is not None, server.running.log()[-3000:]
    assert await poll_until(lambda: _no_files_left(server), timeout_s=30) is not None
    assert (await dataset_versions(platform), walk(server.data_dir / "artifacts")) == before
    assert client.project(project_slug).slug == project_slug  # the client still works


async def _no_files_left(server: Server) -> bool:
    return server.files_left() == []


def test_a_refused_token_is_one_sentence_naming_the_url(server: Server) -> None:
    with Client(server.running.base_url, "aiaas_not-a-token") as client:
        with pytest.raises(AuthenticationError) as refused:
            client.project("anything")
        assert server.running.base_url in str(refused.value)
        with pytest.raises(AuthenticationError):
            client.upload("anything", "rows", io.BytesIO(fresh_csv()), progress=False)


async def test_a_token_of_someone_outside_the_project_cannot_upload_into_it(
    server: Server, platform: Platform, project_slug: str
) -> None:
    stranger = await new_account(platform, "stranger")
    with Client(server.running.base_url, stranger.token) as client, pytest.raises(NotFoundError):
        client.upload(project_slug, "rows", io.BytesIO(fresh_csv()), progress=False)


def test_an_upload_into_an_archived_project_is_a_conflict(client: Client) -> None:
    slug = f"sdk-archived-{uuid.uuid4().hex[:8]}"
    project = client.create_project(slug)
    archive = "mutation($id: ID!) { archiveProject(id: $id) { __typename } }"
    archived = client.http.post(
        "/graphql", json={"query": archive, "variables": {"id": project.id}}
    )

    assert archived.json()["data"]["archiveProject"]["__typename"] == "ArchiveProjectSuccess"
    # The REST route's 409 is the same refusal GraphQL answers as its ConflictError member.
    with pytest.raises(ConflictError, match="archived") as refused:
        client.upload(slug, "rows", io.BytesIO(fresh_csv()), progress=False)
    assert refused.value.code == "CONFLICT"


def test_an_unreachable_server_is_one_sentence_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "aiaas_token") as client:
        with pytest.raises(ServerUnreachableError, match=f"cannot reach the aiaas server at {url}"):
            client.project("fraud")
        assert isinstance(ServerUnreachableError("x"), ConnectionError)


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_a_server_that_does_not_answer_in_time_is_one_sentence_naming_the_url() -> None:
    with silent_server() as url, Client(url, "aiaas_token", timeout=0.5) as client:
        with pytest.raises(RequestTimeoutError, match=f"{url} did not answer in time") as late:
            client.project("fraud")
        assert isinstance(late.value, ServerConnectionError)


@pytest.fixture(scope="module")
def wine(client: Client, project_slug: str) -> DatasetVersion:
    data = load_wine()
    table = pa.table(
        {
            **{f"f{i}": data.data[:, i] for i in range(data.data.shape[1])},
            "label": data.target.astype("int64"),
        }
    )
    return client.project(project_slug).upload(table, name="wine", progress=False)


def test_a_training_job_is_followed_to_its_end_and_its_loss_is_a_dataframe(
    client: Client, project_slug: str, wine: DatasetVersion, capfd: pytest.CaptureFixture[str]
) -> None:
    project = client.project(project_slug)
    job = project.train(wine, trainer="tabular-classifier", target="label", epochs=2, batch_size=32)
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert job.wait(progress=True) is job
    assert job.state is JobState.SUCCEEDED
    assert job.model_version_id is not None
    assert "training tabular-classifier" in capfd.readouterr().err
    loss = job.metrics("loss")
    assert list(loss.columns) == ["step", "value", "min", "max"]
    assert len(loss) > 0
    assert loss["step"].is_monotonic_increasing
    assert "val_accuracy" in job.metric_keys


def test_a_bad_training_request_is_refused_with_its_field_errors(
    client: Client, project_slug: str, wine: DatasetVersion
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        client.project(project_slug).train(wine, trainer="tabular-classifier", target="nope")
    assert "target" in refused.value.field_errors


class CuttableProxy:
    """A TCP proxy to the server whose open connections can be cut, as a network would."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                downstream = self.listener.accept()[0]
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.accepted += 1
            self.sockets += [downstream, upstream]
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for end in self.sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.cut()
        for end in self.sockets:
            end.close()
        self.listener.close()


def test_following_resumes_from_its_cursor_after_the_connection_is_cut(
    server: Server, admin_token: str, project_slug: str, wine: DatasetVersion
) -> None:
    proxy = CuttableProxy(server.running.port)
    try:
        with Client(proxy.url, admin_token) as client:
            job = client.project(project_slug).train(
                wine, trainer="tabular-classifier", target="label", epochs=3, batch_size=32
            )
            seen = []
            for event in job.events():
                seen.append(event.cursor)
                if len(seen) == 2:
                    proxy.cut()
            assert proxy.accepted >= 3  # the request, the first socket, the one after the cut
    finally:
        proxy.close()
    with Client(server.running.base_url, admin_token) as direct:
        replay = TrainingJob(direct, job.id, JobState.QUEUED, job.trainer, job.target)
        assert [event.cursor for event in replay.events()] == seen
    assert len(set(seen)) == len(seen) > 2

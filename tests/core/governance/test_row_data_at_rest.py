"""Nothing readable at rest without a key: the row data PostgreSQL keeps beside the sealed
artifacts (dataset previews, the row values among column statistics, quality check messages and
examples, prediction samples, drift baselines) is sealed with the project's data key, bound to
its row, and still answered as before.

Each scene uploads a CSV with a distinctive text cell, validates it, deploys a model of it, samples
predictions with a distinctive input, and runs a drift check; then every column of every table is
searched for those texts. Sealed values moved between rows fail to open, with an error, rather
than answer the other row's data. A rotated master key opens them all, rewriting none. And a
database holding the plaintext of before revision 0008 loses it in the upgrade, and the platform
rebuilds what it can.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import httpx
import numpy as np
import pytest

from aiaas import migrations
from aiaas.app import create_app
from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets, quality
from aiaas.core.errors import ArtifactIntegrityError
from aiaas.core.governance.crypto import MasterKey, new_data_key
from aiaas.core.governance.sealed_values import SealedColumn
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.accounts import bootstrap_admin, verify_token
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.serving import deployments
from aiaas.core.serving.deployments import Deployment, NewDeployment
from aiaas.core.serving.drift import baselines_to_json
from aiaas.core.serving.drift_checks import baselines_for, check_version
from aiaas.core.serving.prediction_samples import PredictionSampler, stored_samples
from aiaas.core.training import registry as models
from aiaas.graphql.relay import to_global_id
from serving_support import register_bytes_as_version
from support import (
    TEST_APPLICATION_ROLE,
    TEST_OWNER_ROLE,
    Services,
    create_database_from_template,
    data_of,
    drop_database,
    error_codes,
    graphql,
    with_database,
)

TEST_WORKER = "test-row-data-worker"
SIGNATURE = {
    "inputs": [{"name": "city", "dtype": "str", "shape": [-1]}],
    "outputs": [{"name": "label", "dtype": "str", "shape": [-1]}],
}
VERSION_QUERY = """
query Version($id: ID!) {
  node(id: $id) {
    ... on DatasetVersion {
      number preview columnStats
      qualityReport { checks { name passed blocking failingRows message examples } }
    }
  }
}
"""


@dataclass(frozen=True)
class Needles:
    """Texts that appear nowhere but in the data: a cell of the upload, and a prediction's input
    and answer."""

    cell: str
    prediction: str
    answer: str

    @classmethod
    def new(cls) -> Needles:
        return cls(
            cell=f"Zanzibar{uuid.uuid4().hex}",
            prediction=f"Timbuktu{uuid.uuid4().hex}",
            answer=f"Ouagadougou{uuid.uuid4().hex}",
        )

    def all(self) -> list[str]:
        return [self.cell, self.prediction, self.answer]


@dataclass(frozen=True)
class Scene:
    needles: Needles
    project_id: uuid.UUID
    version: datasets.DatasetVersion
    model_version: models.ModelVersion
    deployment: Deployment

    @property
    def version_id(self) -> str:
        return to_global_id("DatasetVersion", self.version.id)


def places_csv(needles: Needles) -> str:
    """Thirty rows; a third of them in the needle's city, which so is the top value, in the
    preview, among the examples of a failing check and in the drift baseline."""
    rows = [
        f"{number},{needles.cell if number % 3 == 0 else f'town-{number % 5}'},c{number % 3}"
        for number in range(30)
    ]
    return "id,city,cultivar\n" + "\n".join(rows) + "\n"


async def scene(
    platform: Platform, admin: Principal, tmp_path: Path, *, description: str = ""
) -> Scene:
    """A project whose data went everywhere row data is stored."""
    needles = Needles.new()
    slug = f"rest-{uuid.uuid4().hex[:10]}"
    project_id = (await create_project(platform, admin, slug=slug, name=slug)).id
    source = tmp_path / f"{uuid.uuid4().hex}.csv"
    source.write_text(places_csv(needles))
    version = (
        await datasets.upload_version(
            platform,
            admin,
            project_id,
            dataset_name="places",
            source=source,
            description=description,
        )
    ).version
    # A failing check, whose examples are the needle's city: not blocking, so the version may
    # still be trained on.
    await datasets.set_expectations(
        platform,
        admin,
        version.dataset_id,
        [
            {
                "kind": "allowed_values",
                "column": "city",
                "values": [f"town-{number}" for number in range(5)],
                "blocking": False,
            }
        ],
    )
    job = await quality.submit_validation(platform, admin, version.id)
    claimed = await claim_job(platform, job.id, TEST_WORKER, stale_after_s=30)
    assert claimed is not None
    note = await quality.run_validation(platform, claimed)
    assert await finish_job(platform, job.id, TEST_WORKER, JobState.SUCCEEDED, note)
    model_version = await register_bytes_as_version(
        platform,
        admin,
        version.id,
        b"never loaded here",
        model_name="places",
        like=cast(Any, SimpleNamespace(format="flax-nnx", signature=SIGNATURE)),
    )
    deployment = await deployments.create_deployment(
        platform, admin, NewDeployment(name="places", version_id=model_version.id)
    )
    sampler = PredictionSampler(platform, rate=1.0)
    for _ in range(platform.config.drift_min_samples):
        sampler.record(
            deployment.id,
            model_version.id,
            "stable",
            {"city": np.array([needles.prediction], dtype=object)},
            {"label": np.array([needles.answer], dtype=object)},
        )
    await sampler.close()
    assert sampler.written == platform.config.drift_min_samples
    report = await check_version(platform, deployment, model_version)
    assert report.sample_count == platform.config.drift_min_samples
    assert report.features["city"]["psi"] is not None, "the baseline and the samples were read"
    return Scene(needles, project_id, version, model_version, deployment)


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def columns_holding(connection: Any, needle: str) -> list[str]:
    """Every column of every table of the schema that holds `needle` in any row: in its text
    form (text, jsonb, arrays, anything), or as bytes in a bytea."""
    found = []
    columns = await connection.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, column_name"
    )
    for column in columns:
        table, name = quoted(column["table_name"]), quoted(column["column_name"])
        if column["data_type"] == "bytea":
            query = f"SELECT count(*) FROM {table} WHERE position($1::bytea IN {name}) > 0"
            hits = await connection.fetchval(query, needle.encode())
        else:
            query = f"SELECT count(*) FROM {table} WHERE strpos({name}::text, $1) > 0"
            hits = await connection.fetchval(query, needle)
        if hits:
            found.append(f"{column['table_name']}.{column['column_name']}")
    return found


async def version_answer(client: httpx.AsyncClient, token: str, scene: Scene) -> dict[str, Any]:
    data = data_of(await graphql(client, VERSION_QUERY, {"id": scene.version_id}, token=token))
    answer: dict[str, Any] = data["node"]
    return answer


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    async with platform.metadata.acquire() as connection:
        return await verify_token(connection, admin_token, "test")


@pytest.fixture(scope="module")
async def shared_scene(
    platform: Platform, admin: Principal, tmp_path_factory: pytest.TempPathFactory
) -> Scene:
    return await scene(platform, admin, tmp_path_factory.mktemp("scene"))


# Nothing in clear ------------------------------------------------------------------------------


async def test_no_cell_of_an_upload_nor_prediction_input_is_in_any_column_of_any_table(
    platform: Platform,
    admin: Principal,
    client: httpx.AsyncClient,
    admin_token: str,
    tmp_path: Path,
) -> None:
    control = f"described-{uuid.uuid4().hex}"
    placed = await scene(platform, admin, tmp_path, description=control)

    # The data went where it is read from: it is answered, whole.
    answer = await version_answer(client, admin_token, placed)
    assert placed.needles.cell in json.dumps(answer["preview"])
    top = answer["columnStats"]["city"]["topValues"][0]
    assert top == {"value": placed.needles.cell, "count": 10}
    checks = {check["name"]: check for check in answer["qualityReport"]["checks"]}
    examples = checks["allowed_values(city)"]["examples"]
    assert examples and set(examples) == {placed.needles.cell}
    [sample] = await stored_samples(platform, placed.project_id, placed.deployment.id, limit=1)
    assert sample.inputs == {"city": placed.needles.prediction}
    assert sample.outputs == {"label": placed.needles.answer}
    baselines = await baselines_for(platform, placed.model_version)
    assert placed.needles.cell in json.dumps(baselines_to_json(baselines))

    async with platform.metadata.acquire() as connection:
        # The search finds what is in clear by design (a dataset's description)...
        assert await columns_holding(connection, control) == ["datasets.description"]
        # ... and none of the data.
        for needle in placed.needles.all():
            assert await columns_holding(connection, needle) == [], needle


async def test_the_aggregates_of_a_version_stay_in_clear_and_its_row_values_do_not(
    platform: Platform, shared_scene: Scene
) -> None:
    async with platform.metadata.acquire() as connection:
        stats = await connection.fetchval(
            "SELECT column_stats FROM dataset_versions WHERE id = $1", shared_scene.version.id
        )
    assert stats["city"] == {
        "type": "string",
        "null_fraction": 0.0,
        "distinct_count": 6,
        "distinct_exact": True,
        "top_values_exact": True,
    }
    assert set(stats["id"]) == {
        "type",
        "null_fraction",
        "distinct_count",
        "distinct_exact",
        "mean",
        "std",
    }


async def test_a_sealed_json_value_reads_back_in_the_order_a_jsonb_column_answered(
    platform: Platform,
) -> None:
    keys = ["b", "a", "aa", "é", "z", "ab", "B", "10", "9", "ü", "ß", "日本", "zz", "", "Zz"]
    value = {"outer": [{key: index for index, key in enumerate(keys)}], "a": {"y": 1, "x": 2}}
    column = SealedColumn("dataset_versions", "sealed_preview")
    project_id, row_id = uuid.uuid4(), uuid.uuid4()
    key = new_data_key()

    opened = column.open_json(
        key, project_id, row_id, column.seal_json(key, project_id, row_id, value)
    )

    async with platform.metadata.acquire() as connection:
        through_jsonb = await connection.fetchval("SELECT $1::text::jsonb::text", json.dumps(value))
    assert json.dumps(opened) == json.dumps(json.loads(through_jsonb))


# Moved sealed values do not open ----------------------------------------------------------------


async def moved(
    platform: Platform, table: str, column: str, key: str, source: Any, target: Any
) -> None:
    """Copy a sealed value from one row to another, as someone with write access to the
    database could."""
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            f"UPDATE {table} SET {column} = (SELECT {column} FROM {table} WHERE {key} = $1) "
            f"WHERE {key} = $2",
            source,
            target,
        )


@pytest.mark.parametrize("field", ["preview", "columnStats"])
@pytest.mark.parametrize("origin", ["same project", "other project"])
async def test_a_sealed_profile_moved_to_another_version_fails_to_open_with_an_error(
    platform: Platform,
    admin: Principal,
    client: httpx.AsyncClient,
    admin_token: str,
    shared_scene: Scene,
    tmp_path: Path,
    field: str,
    origin: str,
) -> None:
    target = await scene(platform, admin, tmp_path)
    source = shared_scene.version
    if origin == "same project":
        other = tmp_path / "other.csv"
        other.write_text(places_csv(Needles.new()))
        source = (
            await datasets.upload_version(
                platform, admin, target.project_id, dataset_name="others", source=other
            )
        ).version
    column = "sealed_preview" if field == "preview" else "sealed_column_values"
    await moved(platform, "dataset_versions", column, "id", source.id, target.version.id)

    status, body = await graphql(
        client,
        f"query($id: ID!) {{ node(id: $id) {{ ... on DatasetVersion {{ {field} }} }} }}",
        {"id": target.version_id},
        token=admin_token,
    )

    assert status == 200
    assert error_codes(body) == ["ARTIFACT_INTEGRITY"], body
    [error] = body["errors"]
    assert error["message"] == (
        f"the sealed {column} of dataset_versions row {target.version.id} does not open: it "
        "was altered, or copied from another row"
    )
    assert body["data"] is None or body["data"]["node"] is None
    answered = json.dumps(body)
    assert shared_scene.needles.cell not in answered


async def test_sealed_check_details_moved_to_another_report_fail_to_open(
    platform: Platform, admin: Principal, shared_scene: Scene, tmp_path: Path
) -> None:
    target = await scene(platform, admin, tmp_path)
    async with platform.metadata.acquire() as connection:
        [source_report] = await quality.reports_of(connection, shared_scene.version.id)
        [target_report] = await quality.reports_of(connection, target.version.id)
    await moved(
        platform,
        "quality_reports",
        "sealed_check_details",
        "id",
        source_report.id,
        target_report.id,
    )
    async with platform.metadata.acquire() as connection:
        [target_report] = await quality.reports_of(connection, target.version.id)

    with pytest.raises(ArtifactIntegrityError, match=f"quality_reports row {target_report.id}"):
        await quality.opened_checks(platform, target_report)


async def test_a_sealed_sample_moved_to_another_sample_fails_to_open(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    target = await scene(platform, admin, tmp_path)
    first, second = await stored_samples(platform, target.project_id, target.deployment.id, limit=2)
    await moved(platform, "prediction_samples", "sealed_inputs", "id", first.id, second.id)

    with pytest.raises(ArtifactIntegrityError, match=f"prediction_samples row {second.id}"):
        await stored_samples(platform, target.project_id, target.deployment.id)
    # The drift check of that version fails with it, and says so in the log; it does not
    # compare what it cannot read.
    with pytest.raises(ArtifactIntegrityError):
        await check_version(platform, target.deployment, target.model_version)


async def test_a_sealed_baseline_moved_to_another_model_version_fails_to_open(
    platform: Platform, admin: Principal, shared_scene: Scene, tmp_path: Path
) -> None:
    target = await scene(platform, admin, tmp_path)
    await moved(
        platform,
        "feature_baselines",
        "sealed_baseline",
        "version_id",
        shared_scene.model_version.id,
        target.model_version.id,
    )

    with pytest.raises(ArtifactIntegrityError, match=f"row {target.model_version.id}"):
        await baselines_for(platform, target.model_version)


# Instances of their own: key rotation, and the upgrade from plaintext ----------------------------


@dataclass(frozen=True)
class OwnDatabase:
    application_url: str
    owner_url: str


@pytest.fixture
async def own_database(services: Services, template_database: str) -> AsyncIterator[OwnDatabase]:
    name = await create_database_from_template(
        services, template_database, "test_row_data", owner=TEST_OWNER_ROLE
    )
    url = with_database(services.server_url, name)
    yield OwnDatabase(TEST_APPLICATION_ROLE.url_on(url), TEST_OWNER_ROLE.url_on(url))
    await drop_database(services, name)


@dataclass(frozen=True)
class Running:
    platform: Platform
    client: httpx.AsyncClient


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    platform = create_platform(config)
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield Running(platform, client)
    finally:
        await platform.stop()


def instance_config(
    config: Config, database: OwnDatabase, data_dir: Path, **changes: Any
) -> Config:
    return build_config(
        {
            **config.model_dump(),
            "database_url": database.application_url,
            "database_owner_url": database.owner_url,
            "data_dir": data_dir,
            "artifact_dir": None,
            "queue_name": f"{config.queue_name}:{uuid.uuid4().hex[:6]}",
            **changes,
        }
    )


async def founded(instance: Running, tmp_path: Path) -> tuple[str, Scene]:
    """The instance's first admin's token, and a scene made by that admin."""
    issued = await bootstrap_admin(instance.platform)
    assert issued is not None
    async with instance.platform.metadata.acquire() as connection:
        admin = await verify_token(connection, issued.secret, "test")
    return issued.secret, await scene(instance.platform, admin, tmp_path)


SEALED_COLUMNS = {
    "dataset_versions": ("id", "sealed_preview"),
    "quality_reports": ("id", "sealed_check_details"),
    "prediction_samples": ("id", "sealed_inputs"),
    "feature_baselines": ("version_id", "sealed_baseline"),
}


async def sealed_values(platform: Platform) -> dict[tuple[str, Any], bytes]:
    found = {}
    async with platform.metadata.acquire() as connection:
        for table, (key, column) in SEALED_COLUMNS.items():
            for row in await connection.fetch(
                f"SELECT {key} AS key, {column} AS value FROM {table}"
            ):
                found[(table, row["key"])] = bytes(row["value"])
    return found


async def test_a_rotated_master_key_opens_every_sealed_value_and_rewrites_none(
    config: Config, own_database: OwnDatabase, tmp_path: Path
) -> None:
    old, new = MasterKey.generate().encoded(), MasterKey.generate().encoded()
    under_old = instance_config(config, own_database, tmp_path / "data", master_key=old)
    async with running(under_old) as instance:
        token, placed = await founded(instance, tmp_path)
        before = await version_answer(instance.client, token, placed)
        sealed_before = await sealed_values(instance.platform)
    assert {table for table, _ in sealed_before} == set(SEALED_COLUMNS)

    rotating = under_old.model_copy(update={"master_key": new, "previous_master_keys": (old,)})
    async with running(rotating) as instance:
        assert await instance.platform.service(VAULT).rotate(instance.platform) == 1

    only_new = under_old.model_copy(update={"master_key": new})
    async with running(only_new) as instance:
        assert await sealed_values(instance.platform) == sealed_before
        assert await version_answer(instance.client, token, placed) == before
        samples = await stored_samples(instance.platform, placed.project_id, placed.deployment.id)
        assert {sample.inputs["city"] for sample in samples} == {placed.needles.prediction}
        report = await check_version(instance.platform, placed.deployment, placed.model_version)
        assert report.features["city"]["psi"] is not None


async def table_files(connection: Any) -> dict[str, tuple[int, int]]:
    """Each table's file and its TOAST table's file (their filenodes), by name."""
    rows = await connection.fetch(
        "SELECT relname, pg_relation_filenode(oid) AS heap, "
        "pg_relation_filenode(reltoastrelid) AS toast FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relnamespace = current_schema()::regnamespace",
        list(SEALED_COLUMNS),
    )
    return {row["relname"]: (row["heap"], row["toast"]) for row in rows}


async def test_the_upgrade_drops_the_plaintext_and_what_it_dropped_comes_back_sealed(
    config: Config, own_database: OwnDatabase, tmp_path: Path
) -> None:
    instance_settings = instance_config(config, own_database, tmp_path / "data")
    async with running(instance_settings) as instance:
        token, placed = await founded(instance, tmp_path)
        answered = await version_answer(instance.client, token, placed)
        # The statistics as they were stored (the answer names their keys in camelCase).
        stats = await datasets.version_column_stats(instance.platform, placed.version)
        baselines = await baselines_for(instance.platform, placed.model_version)
        async with instance.platform.metadata.acquire() as connection:
            [report] = await quality.reports_of(connection, placed.version.id)
        checks = await quality.opened_checks(instance.platform, report)

    # As it was stored before revision 0008: every field in clear.
    await migrations.downgrade(
        own_database.owner_url, "0007", application_role=TEST_APPLICATION_ROLE.name
    )
    connection = await asyncpg.connect(own_database.owner_url)
    try:
        await connection.execute(
            "UPDATE dataset_versions SET preview = $2::jsonb, column_stats = $3::jsonb "
            "WHERE id = $1",
            placed.version.id,
            json.dumps(answered["preview"]),
            json.dumps(stats),
        )
        # What the version answered is what the jsonb columns answered, order and all.
        stored = await connection.fetchrow(
            "SELECT preview::text AS preview, column_stats::text AS stats FROM dataset_versions "
            "WHERE id = $1",
            placed.version.id,
        )
        assert json.dumps(json.loads(stored["preview"])) == json.dumps(answered["preview"])
        assert json.dumps(json.loads(stored["stats"])) == json.dumps(stats)
        await connection.execute(
            "UPDATE quality_reports SET checks = $2::jsonb WHERE id = $1",
            report.id,
            json.dumps(checks),
        )
        await connection.execute(
            "INSERT INTO feature_baselines (version_id, baseline) VALUES ($1, $2::jsonb)",
            placed.model_version.id,
            json.dumps(baselines_to_json(baselines)),
        )
        await connection.execute(
            "INSERT INTO prediction_samples (deployment_id, version_id, role, inputs, outputs) "
            "VALUES ($1, $2, 'stable', $3::jsonb, $4::jsonb)",
            placed.deployment.id,
            placed.model_version.id,
            json.dumps({"city": placed.needles.prediction}),
            json.dumps({"label": placed.needles.answer}),
        )
        for needle in placed.needles.all():
            assert await columns_holding(connection, needle) != [], "the plaintext is there"
        files_before = await table_files(connection)

        await migrations.upgrade(
            own_database.owner_url, application_role=TEST_APPLICATION_ROLE.name
        )

        for needle in placed.needles.all():
            assert await columns_holding(connection, needle) == [], needle
        # Every table that held plaintext was rewritten into new files, not only updated: no
        # dead row of the old ones is left in the live table.
        files_after = await table_files(connection)
        for table in SEALED_COLUMNS:
            (heap_before, toast_before), (heap_after, toast_after) = (
                files_before[table],
                files_after[table],
            )
            assert heap_after != heap_before and toast_after != toast_before, table
        assert await connection.fetchval("SELECT count(*) FROM prediction_samples") == 0
        assert await connection.fetchval("SELECT count(*) FROM feature_baselines") == 0
    finally:
        await connection.close()

    async with running(instance_settings) as instance:
        rebuilt = await version_answer(instance.client, token, placed)
        # The preview and statistics come back as they were, rebuilt from the artifact.
        assert json.dumps(rebuilt["preview"]) == json.dumps(answered["preview"])
        assert json.dumps(rebuilt["columnStats"]) == json.dumps(answered["columnStats"])
        # The check details cannot: they say so until the version is validated again.
        checks = rebuilt["qualityReport"]["checks"]
        assert checks == [
            {
                **before,
                "message": "passed" if before["passed"] else quality.DETAILS_REMOVED,
                "examples": [],
            }
            for before in answered["qualityReport"]["checks"]
        ]
        assert not all(check["passed"] for check in checks)
        # The baseline is computed again, the same.
        assert await baselines_for(instance.platform, placed.model_version) == baselines
        async with instance.platform.metadata.acquire() as connection:
            assert await connection.fetchval(
                "SELECT sealed_preview IS NOT NULL FROM dataset_versions WHERE id = $1",
                placed.version.id,
            )
            for needle in placed.needles.all():
                assert await columns_holding(connection, needle) == [], needle
        # Read again, from what the first read sealed.
        assert await version_answer(instance.client, token, placed) == rebuilt

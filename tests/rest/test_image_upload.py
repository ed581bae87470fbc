"""Uploading an archive of images through `POST /v1/projects/{slug}/datasets/{name}/versions`:
detected from its bytes (or declared `format=images`), answered 201 with a version of the image
contract, 200 with the same version for the same bytes; a bad archive is a 400 naming the member,
audited, and leaves nothing behind."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from aiaas.core.data import datasets
from aiaas.core.identity import projects
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from image_archives import dicom_bytes, digit_pngs, tar_of, zip_of
from support import audit_mark, audit_rows_since, footprint, graphql, unique


@pytest.fixture(scope="module")
async def project(platform: Platform, admin_token: str) -> projects.Project:
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    return await projects.create_project(platform, admin, slug=unique("img"), name="Images")


@pytest.fixture(scope="module")
def auth(admin_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {admin_token}"}


def versions_url(project: projects.Project, dataset: str) -> str:
    return f"/v1/projects/{project.slug}/datasets/{dataset}/versions"


async def test_a_zip_of_images_answers_201_then_200_for_the_same_bytes(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    digits = digit_pngs(20)
    archive = zip_of({**{f.path: f.data for f in digits}, "ct/ct.dcm": dicom_bytes("CT_small.dcm")})
    dataset = unique("digits")

    first = await client.post(versions_url(project, dataset), content=archive, headers=auth)
    again = await client.post(versions_url(project, dataset), content=archive, headers=auth)

    assert first.status_code == 201, first.text
    version = first.json()["version"]
    assert version["sourceFormat"] == "images"
    assert version["rowCount"] == 21
    assert {column["name"]: column["type"] for column in version["columns"]} == {
        "path": "string",
        "image": "image",
        "label": "string",
        "width": "integer",
        "height": "integer",
        "channels": "integer",
        "format": "string",
        "dicom_tags": "string",
    }
    assert again.status_code == 200
    assert again.json() == {"version": version, "created": False}


async def test_format_images_may_be_declared_and_is_checked(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    archive = tar_of({f.path: f.data for f in digit_pngs(3)})

    declared = await client.post(
        versions_url(project, unique("tar")),
        content=archive,
        params={"format": "images"},
        headers=auth,
    )
    csv_declared_images = await client.post(
        versions_url(project, unique("csv")),
        content=b"a,b\n1,2\n",
        params={"format": "images"},
        headers=auth,
    )

    assert declared.status_code == 201, declared.text
    assert declared.json()["version"]["rowCount"] == 3
    assert csv_declared_images.status_code == 400
    assert (
        "declared images but its content is csv" in csv_declared_images.json()["error"]["message"]
    )


async def test_a_bad_archive_answers_400_naming_the_member_and_leaves_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
) -> None:
    archive = zip_of({**{f.path: f.data for f in digit_pngs(3)}, "../../etc/cron.d/x.png": b"x"})
    before = await footprint(platform)
    mark = await audit_mark(platform)

    response = await client.post(
        versions_url(project, unique("bad")), content=archive, headers=auth
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    assert error["fieldErrors"]["member"] == "../../etc/cron.d/x.png"
    assert "climbs out of the archive" in error["message"]
    assert await footprint(platform) == before
    (event,) = await audit_rows_since(platform, mark, action="dataset.upload")
    assert event["outcome"] == "failed"
    assert "../../etc/cron.d/x.png" in event["details"]["message"]


SET_PERSONAL_TAGS = """
mutation($id: ID!, $keep: Boolean!) {
  setProjectDicomPersonalTags(id: $id, keep: $keep) {
    __typename
    ... on ProjectSettingsSuccess { keepDicomPersonalTags project { keepDicomPersonalTags } }
  }
}"""


async def test_an_owner_keeps_personal_tags_through_graphql_and_the_next_upload_keeps_them(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    admin_token: str,
    project: projects.Project,
    platform: Platform,
) -> None:
    project_id = json.loads(
        (
            await client.post(
                "/graphql",
                json={"query": f'{{ project(slug: "{project.slug}") {{ id }} }}'},
                headers=auth,
            )
        ).text
    )["data"]["project"]["id"]
    archive = zip_of({"ct.dcm": dicom_bytes("CT_small.dcm")})

    dropped = await client.post(
        versions_url(project, unique("drop")), content=archive, headers=auth
    )
    status, body = await graphql(
        client, SET_PERSONAL_TAGS, {"id": project_id, "keep": True}, token=admin_token
    )
    kept = await client.post(versions_url(project, unique("keep")), content=archive, headers=auth)
    await graphql(client, SET_PERSONAL_TAGS, {"id": project_id, "keep": False}, token=admin_token)

    assert status == 200
    assert body["data"]["setProjectDicomPersonalTags"] == {
        "__typename": "ProjectSettingsSuccess",
        "keepDicomPersonalTags": True,
        "project": {"keepDicomPersonalTags": True},
    }
    tags = []
    for response in (dropped, kept):
        assert response.status_code == 201, response.text
        async with platform.metadata.acquire() as connection:
            version = await datasets.get_version(
                connection, uuid.UUID(response.json()["version"]["uuid"])
            )
        (row,) = (await datasets.read_version_table(platform, version)).to_pylist()
        tags.append(json.loads(row["dicom_tags"]))
    assert "PatientName" not in tags[0]
    assert tags[1]["PatientName"] == "CompressedSamples^CT1"

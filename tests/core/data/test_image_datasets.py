"""Image datasets: an archive (zip, tar, tar.gz) of PNG, JPEG or DICOM files becomes a dataset
version with the table of the image contract (docs/guides/images.md), labelled from a label file
or from folders, profiled and previewed with thumbnails; DICOM personal tags dropped unless the
project keeps them, audited either way. Every bad archive is a typed refusal naming the member,
and nothing is stored. Real PostgreSQL and ingest processes."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage import data as sample_images

from aiaas.core.auth import Principal
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.data.images.archives import MAX_MEMBER_BYTES, MAX_MEMBERS
from aiaas.core.errors import InputError
from aiaas.core.identity import projects
from aiaas.core.identity.project_settings import set_keep_dicom_personal_tags
from aiaas.core.images import decode_image
from aiaas.core.platform import Platform
from image_archives import (
    dicom_bytes,
    digit_pngs,
    gigapixel_png,
    jpeg_bytes,
    labels_csv,
    png_bytes,
    tar_of,
    zip_of,
    zip_with_encrypted_member,
    zip_with_symlink,
)
from support import audit_mark, audit_rows_since, bootstrap_admin_principal, footprint

MAX_ROWS = 300
"""The module's `dataset_max_rows`: an archive of more images is refused."""


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return build_config({**config.model_dump(), "dataset_max_rows": MAX_ROWS})


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


@pytest.fixture
async def project(platform: Platform, admin: Principal) -> projects.Project:
    slug = f"images-{uuid.uuid4().hex[:10]}"
    return await projects.create_project(platform, admin, slug=slug, name="Images")


async def upload(
    platform: Platform,
    admin: Principal,
    project: projects.Project,
    content: bytes,
    tmp_path: Path,
    dataset: str = "scans",
) -> datasets.NewVersion:
    source = tmp_path / f"upload-{uuid.uuid4().hex}"
    source.write_bytes(content)
    return await datasets.upload_version(
        platform, admin, project.id, dataset_name=dataset, source=source
    )


async def table_of(platform: Platform, version: datasets.DatasetVersion) -> pa.Table:
    return await datasets.read_version_table(platform, version)


def rows_by_path(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["path"]: row for row in table.to_pylist()}


# Digits, labelled from folders and from a label file ------------------------------------------


async def test_digits_as_pngs_in_a_zip_are_labelled_from_their_folders(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    digits = digit_pngs(60)
    # Stored, as most archivers store images: read with positioned reads, checksums checked.
    archive = zip_of({f.path: f.data for f in digits}, compression=zipfile.ZIP_STORED)

    added = await upload(platform, admin, project, archive, tmp_path)

    version = added.version
    assert added.created
    assert version.source_format == "images"
    assert version.row_count == 60
    assert version.column_types == {
        "path": "string",
        "image": "image",
        "label": "string",
        "width": "integer",
        "height": "integer",
        "channels": "integer",
        "format": "string",
        "dicom_tags": "string",
    }
    table = await table_of(platform, version)
    assert table.schema.field("image").type == pa.binary()
    assert table.schema.field("width").type == pa.int32()
    rows = rows_by_path(table)
    for digit in digits:
        row = rows[digit.path]
        # Kept as uploaded, byte for byte, and labelled by its folder.
        assert row["image"] == digit.data
        assert row["label"] == digit.label
        assert (row["width"], row["height"], row["channels"]) == (8, 8, 1)
        assert row["format"] == "png"
        assert row["dicom_tags"] == "{}"


async def test_the_profile_has_sizes_channels_label_balance_and_thumbnails(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    digits = digit_pngs(40)
    camera = png_bytes(sample_images.camera())  # 512x512 grey
    members = {**{f.path: f.data for f in digits}, "camera.png": camera}

    version = (await upload(platform, admin, project, zip_of(members), tmp_path)).version

    stats = await datasets.version_column_stats(platform, version)
    image = stats["image"]
    assert image["type"] == "image"
    assert image["formats"] == {"png": 41}
    assert image["channels"] == {"1": 41}
    assert image["width"]["min"] == 8 and image["width"]["max"] == 512
    assert image["height"]["max"] == 512
    expected = {}
    for digit in digits:
        expected[digit.label] = expected.get(digit.label, 0) + 1
    balance = {entry["value"]: entry["count"] for entry in stats["label"]["label_balance"]}
    assert balance == expected  # camera.png, at the root, is unlabelled
    assert stats["label"]["null_fraction"] == pytest.approx(1 / 41)
    # The label balance is row values (label text): sealed, not in the row's clear statistics.
    assert "label_balance" not in version.column_stats["label"]
    preview = await datasets.version_preview(platform, version)
    assert len(preview) == 20
    for record in preview:
        prefix = "data:image/png;base64,"
        assert record["image"].startswith(prefix)
        thumbnail = decode_image(base64.b64decode(record["image"][len(prefix) :]))
        assert max(thumbnail.shape[:2]) <= 48


@pytest.mark.parametrize("label_file", ["labels.csv", "labels.parquet"])
async def test_a_label_file_labels_images_by_path(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path, label_file: str
) -> None:
    digits = digit_pngs(12)
    # The label file wins over the folders; an image it does not name is unlabelled.
    named = [(f.path, f"digit-{f.label}") for f in digits[:10]]
    if label_file == "labels.csv":
        labels = labels_csv(named)
    else:
        buffer = io.BytesIO()
        pq.write_table(
            pa.table({"path": [p for p, _ in named], "label": [lab for _, lab in named]}), buffer
        )
        labels = buffer.getvalue()
    members = {**{f.path: f.data for f in digits}, label_file: labels}

    version = (await upload(platform, admin, project, zip_of(members), tmp_path)).version

    rows = rows_by_path(await table_of(platform, version))
    assert set(rows) == {f.path for f in digits}  # the label file is no row
    for digit in digits[:10]:
        assert rows[digit.path]["label"] == f"digit-{digit.label}"
    for digit in digits[10:]:
        assert rows[digit.path]["label"] is None


# Sample photographs, in a tar.gz -------------------------------------------------------------


async def test_jpeg_and_png_samples_in_a_gzipped_tar(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    astronaut = jpeg_bytes(sample_images.astronaut())  # 512x512 RGB
    coins = png_bytes(sample_images.coins())  # 303x384 grey
    archive = tar_of(
        {"./photos/astronaut.jpg": astronaut, "./coins/coins.png": coins, "._astronaut.jpg": b"x"},
        gzip=True,
    )
    mark = await audit_mark(platform)

    version = (await upload(platform, admin, project, archive, tmp_path)).version

    rows = rows_by_path(await table_of(platform, version))
    assert set(rows) == {"photos/astronaut.jpg", "coins/coins.png"}
    astro = rows["photos/astronaut.jpg"]
    assert astro["image"] == astronaut
    assert (astro["width"], astro["height"], astro["channels"], astro["format"]) == (
        512,
        512,
        3,
        "jpeg",
    )
    assert astro["label"] == "photos"
    coin = rows["coins/coins.png"]
    assert (coin["width"], coin["height"], coin["channels"]) == (384, 303, 1)
    (event,) = await audit_rows_since(platform, mark, action="dataset.upload", outcome="success")
    # The macOS resource fork was skipped, and counted.
    assert event["details"]["images"] == {"images": 2, "skipped_files": 1, "dicom_files": 0}


# DICOM ---------------------------------------------------------------------------------------

PERSONAL = ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "InstitutionName")


async def test_dicom_pixels_become_pngs_and_personal_tags_are_dropped(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    members = {"ct/ct.dcm": dicom_bytes("CT_small.dcm"), "mr/mr.dcm": dicom_bytes("MR_small.dcm")}
    mark = await audit_mark(platform)

    version = (await upload(platform, admin, project, zip_of(members), tmp_path)).version

    rows = rows_by_path(await table_of(platform, version))
    ct, mr = rows["ct/ct.dcm"], rows["mr/mr.dcm"]
    assert ct["format"] == mr["format"] == "dicom"
    assert (ct["width"], ct["height"], ct["channels"], ct["label"]) == (128, 128, 1, "ct")
    pixels = decode_image(ct["image"])  # an 8-bit PNG, min-max scaled: CT_small has no window
    assert pixels.shape == (128, 128, 1)
    assert pixels.min() == 0 and pixels.max() == 255
    assert decode_image(mr["image"]).shape == (64, 64, 1)
    tags = json.loads(ct["dicom_tags"])
    assert tags["Modality"] == "CT" and tags["Rows"] == 128
    assert json.loads(mr["dicom_tags"])["WindowCenter"] == 600.0
    for table_row in (ct, mr):
        kept = json.loads(table_row["dicom_tags"])
        assert not set(PERSONAL) & set(kept)
        assert "CompressedSamples" not in table_row["dicom_tags"]
    (event,) = await audit_rows_since(platform, mark, action="dataset.upload", outcome="success")
    assert event["details"]["images"]["dicom_files"] == 2
    assert event["details"]["images"]["dicom_personal_tags"] == "dropped"


async def test_a_project_that_keeps_personal_tags_keeps_them_and_says_so(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    mark = await audit_mark(platform)
    await set_keep_dicom_personal_tags(platform, admin, project.id, True)
    members = {"ct.dcm": dicom_bytes("CT_small.dcm")}

    version = (await upload(platform, admin, project, zip_of(members), tmp_path)).version

    (row,) = (await table_of(platform, version)).to_pylist()
    tags = json.loads(row["dicom_tags"])
    assert tags["PatientName"] == "CompressedSamples^CT1"
    assert tags["PatientID"] == "1CT1"
    assert tags["Modality"] == "CT"
    assert row["label"] is None  # at the archive's root
    setting, uploaded = await audit_rows_since(platform, mark, outcome="success")
    assert setting["action"] == "project.set_dicom_personal_tags"
    assert setting["details"] == {"keep_dicom_personal_tags": True}
    assert uploaded["details"]["images"]["dicom_personal_tags"] == "kept"


# A Parquet table of the contract, uploaded as it is ------------------------------------------


async def test_a_parquet_binary_column_of_images_is_an_image_column(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    digits = digit_pngs(5)
    table = pa.table(
        {
            "path": [f.path for f in digits],
            "image": pa.array([f.data for f in digits], pa.large_binary()),
            "label": [f.label for f in digits],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)

    version = (await upload(platform, admin, project, buffer.getvalue(), tmp_path)).version

    assert version.source_format == "parquet"
    assert version.column_types["image"] == "image"
    stored = await table_of(platform, version)
    assert stored.schema.field("image").type == pa.binary()
    # Never mangled into text: the bytes are the uploaded PNGs.
    assert stored.column("image").to_pylist() == [f.data for f in digits]
    preview = await datasets.version_preview(platform, version)
    assert preview[0]["image"].startswith("data:image/png;base64,")


async def test_a_parquet_binary_column_that_is_not_images_is_refused(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    table = pa.table({"id": [1, 2], "blob": pa.array([b"\x89PNG\r\n\x1a\nnot really", b"x"])})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    before = await footprint(platform)

    with pytest.raises(InputError, match=r"column 'blob', row 0 does not decode"):
        await upload(platform, admin, project, buffer.getvalue(), tmp_path)

    assert await footprint(platform) == before


# Bad archives: a typed refusal naming the member, and nothing stored --------------------------


def _digits_zip(extra: dict[str, bytes]) -> bytes:
    return zip_of({**{f.path: f.data for f in digit_pngs(3)}, **extra})


def _truncated_png() -> bytes:
    whole = png_bytes(sample_images.camera())
    return whole[: len(whole) // 2]


def _corrupt_stored(compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip whose member's bytes were changed after its checksum was written."""
    whole = png_bytes(sample_images.camera())
    archive = bytearray(zip_of({"x/bad.png": whole}, compression=compression))
    middle = archive.index(b"x/bad.png") + 9 + len(whole) // 2
    archive[middle] ^= 0xFF
    return bytes(archive)


def _many_members() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(MAX_MEMBERS + 1):
            archive.writestr(f"d{index}/", b"")
    return buffer.getvalue()


def _bomb() -> bytes:
    # Three members of 30 MiB of zeros: each under the member limit, the whole over a hundred
    # times the archive's size.
    zeros = bytes(30 << 20)
    return zip_of({f"{index}.png": zeros for index in range(3)})


BAD_ARCHIVES: dict[str, tuple[Any, str, str]] = {
    "traversal": (lambda: _digits_zip({"../evil.png": b"x"}), "../evil.png", "climbs out"),
    "nested-traversal": (lambda: _digits_zip({"a/../../e.png": b"x"}), "a/../../e.png", "climbs"),
    "absolute": (lambda: tar_of({"/etc/evil.png": b"x"}), "/etc/evil.png", "absolute"),
    "tar-symlink": (
        lambda: tar_of({"a.png": digit_pngs(1)[0].data}, symlinks={"b.png": "/etc/passwd"}),
        "b.png",
        "symbolic link",
    ),
    "tar-hardlink": (
        lambda: tar_of({"a.png": digit_pngs(1)[0].data}, hardlinks={"b.png": "a.png"}),
        "b.png",
        "hard link",
    ),
    "zip-symlink": (
        lambda: zip_with_symlink({"a.png": digit_pngs(1)[0].data}, "b.png", "/etc/passwd"),
        "b.png",
        "symbolic link",
    ),
    "too-many-members": (_many_members, "", f"more than {MAX_MEMBERS} members"),
    "too-many-images": (
        lambda: zip_of({f"i/{n}.png": digit_pngs(1)[0].data for n in range(MAX_ROWS + 1)}),
        "",
        f"more than {MAX_ROWS} images",
    ),
    "too-large-member": (
        lambda: zip_of({"big.png": bytes(MAX_MEMBER_BYTES + 1)}),
        "big.png",
        "past the limit",
    ),
    "archive-bomb": (_bomb, ".png", "decompression bomb"),
    "image-bomb": (lambda: _digits_zip({"x/huge.png": gigapixel_png()}), "x/huge.png", "limit"),
    "corrupt-image": (lambda: _digits_zip({"x/cut.png": _truncated_png()}), "x/cut.png", "decode"),
    "truncated-dicom": (
        lambda: _digits_zip({"x/cut.dcm": dicom_bytes("CT_small.dcm")[:-1000]}),
        "x/cut.dcm",
        "does not decode",
    ),
    "dicom-without-pixels": (
        lambda: _digits_zip({"x/cut.dcm": dicom_bytes("CT_small.dcm")[:2000]}),
        "x/cut.dcm",
        "without pixels",
    ),
    "multi-frame-dicom": (
        lambda: _digits_zip({"x/dose.dcm": dicom_bytes("rtdose.dcm")}),
        "x/dose.dcm",
        "15 frames",
    ),
    "label-file-names-missing-images": (
        lambda: _digits_zip({"labels.csv": labels_csv([("0/0000.png", "a"), ("gone.png", "b")])}),
        "labels.csv",
        "'gone.png'",
    ),
    "label-file-without-label-column": (
        lambda: _digits_zip({"labels.csv": b"path,class\n0/0000.png,a\n"}),
        "labels.csv",
        "needs columns path and label",
    ),
    "encrypted-member": (
        lambda: zip_with_encrypted_member("x/secret.png", digit_pngs(1)[0].data),
        "x/secret.png",
        "encrypted",
    ),
    "corrupt-stored-member": (_corrupt_stored, "x/bad.png", "checksum does not match"),
    "corrupt-deflated-member": (
        lambda: _corrupt_stored(zipfile.ZIP_DEFLATED),
        "x/bad.png",
        "cannot be read from the archive",
    ),
    "nested-label-file": (
        lambda: _digits_zip({"0/labels.csv": labels_csv([("0/0000.png", "a")])}),
        "0/labels.csv",
        "only at the archive's root",
    ),
    "empty-archive": (lambda: zip_of({}), "", "no images"),
    "only-folders": (lambda: zip_of({"empty/": b""}), "", "no images"),
    "non-image-member": (lambda: _digits_zip({"notes.txt": b"hello"}), "notes.txt", "not a png"),
    "duplicate-path": (
        lambda: tar_of({"a.png": digit_pngs(1)[0].data, "./a.png": digit_pngs(1)[0].data}),
        "a.png",
        "twice",
    ),
    "not-a-tar": (lambda: b"\x1f\x8b" + bytes(600), "", "holds binary data"),
    "huge-extended-tar-header": (lambda: _pax_header_bomb(2 << 20), "", "extended tar header"),
}


def _pax_header_bomb(header_bytes: int) -> bytes:
    """A tar.gz of one tiny PNG behind an extended (pax) header of `header_bytes`: the sizes its
    members declare add up to a few bytes, while tarfile would read the header whole."""
    body = b" comment=" + b"a" * header_bytes + b"\n"
    length = len(body) + len(str(len(body))) + 1
    record = str(length).encode() + body
    header = tarfile.TarInfo("PaxHeaders/x")
    header.type = tarfile.XHDTYPE
    header.size = len(record)
    image = digit_pngs(1)[0].data
    member = tarfile.TarInfo("0/0000.png")
    member.size = len(image)
    raw = b"".join(
        [
            header.tobuf(tarfile.USTAR_FORMAT),
            record + bytes(-len(record) % 512),
            member.tobuf(tarfile.USTAR_FORMAT),
            image + bytes(-len(image) % 512),
            bytes(1024),
        ]
    )
    return gzip.compress(raw)


@pytest.mark.parametrize("case", BAD_ARCHIVES, ids=list(BAD_ARCHIVES))
async def test_a_bad_archive_is_refused_naming_the_member_and_nothing_is_stored(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path, case: str
) -> None:
    make, member, complaint = BAD_ARCHIVES[case]
    content = make()
    before = await footprint(platform)
    mark = await audit_mark(platform)

    with pytest.raises(InputError) as refused:
        await upload(platform, admin, project, content, tmp_path)

    error = refused.value
    assert complaint.lower() in error.message.lower()
    assert member in error.message
    assert error.field_errors["file"]
    assert await footprint(platform) == before
    (event,) = await audit_rows_since(platform, mark, action="dataset.upload")
    assert event["outcome"] == "failed"


async def test_pixels_of_a_decoded_upload_match_the_source(
    platform: Platform, admin: Principal, project: projects.Project, tmp_path: Path
) -> None:
    """What the trainer reads back (`decode_image` of the stored cell) is the source's pixels:
    PNG is lossless."""
    camera = sample_images.camera()

    version = (
        await upload(platform, admin, project, zip_of({"c.png": png_bytes(camera)}), tmp_path)
    ).version

    (row,) = (await table_of(platform, version)).to_pylist()
    assert np.array_equal(decode_image(row["image"])[:, :, 0], camera)
    assert Image.open(io.BytesIO(row["image"])).format == "PNG"

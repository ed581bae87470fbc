"""The SDK uploads an archive of images (zip, tar.gz) as a dataset version, told from its bytes
as the server tells it, against a real `aiaas serve`; a PNG alone is still refused before
anything is sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiaas.client import Client
from aiaas.client.errors import UnsupportedFileError
from image_archives import digit_pngs, png_bytes, tar_of, zip_of


def test_a_zip_and_a_gzipped_tar_of_images_are_uploaded_as_image_versions(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    digits = digit_pngs(10)
    zipped = tmp_path / "digits.zip"
    zipped.write_bytes(zip_of({f.path: f.data for f in digits}))
    tarred = tmp_path / "digits.tar.gz"
    tarred.write_bytes(tar_of({f.path: f.data for f in digits}, gzip=True))
    project = client.project(project_slug)

    from_zip = project.upload(zipped, name="digits-zip", progress=False)
    from_tar = project.upload(tarred, name="digits-tar", progress=False)

    for version in (from_zip, from_tar):
        assert version.created
        assert version.row_count == 10
        assert version.source_format == "images"
        assert {column["name"]: column["type"] for column in version.columns}["image"] == "image"


def test_a_lone_image_is_still_refused_before_anything_is_sent(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))

    with pytest.raises(UnsupportedFileError, match=r"picture\.png is neither CSV nor Parquet"):
        client.project(project_slug).upload(picture, name="picture", progress=False)


def test_a_gzip_file_is_an_image_archive_only_when_it_holds_a_tar() -> None:
    """A gzipped CSV is refused before anything is sent, as the server would refuse it; a
    tar.gz is an archive of images."""
    import gzip
    import io
    import tarfile

    from aiaas.client.errors import UnsupportedFileError
    from aiaas.client.uploads import opened

    with (
        pytest.raises(UnsupportedFileError, match="neither CSV nor Parquet"),
        opened(io.BytesIO(gzip.compress(b"a,b\n1,2\n"))),
    ):
        pass
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        member = tarfile.TarInfo("0/0000.png")
        member.size = 3
        tar.addfile(member, io.BytesIO(b"png"))
    archive.seek(0)
    with opened(archive) as body:
        assert (body.format, body.file.tell()) == ("images", 0)

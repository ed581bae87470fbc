"""Archives of images for the image dataset tests, made from what packages ship: scikit-learn's
digits written as PNG files, scikit-image's sample images, pydicom's test files. Nothing is
downloaded."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageFile:
    path: str
    data: bytes
    label: str


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def digit_pngs(count: int) -> list[ImageFile]:
    """The first `count` of scikit-learn's 8x8 digits as grey PNGs, in folders named for their
    digit: `3/0007.png`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = []
    for index in range(count):
        pixels = (digits.images[index] * 16).clip(0, 255).astype(np.uint8)
        label = str(digits.target[index])
        files.append(ImageFile(f"{label}/{index:04d}.png", png_bytes(pixels), label))
    return files


def dicom_bytes(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom's wheel ships {name}"
    with open(path, "rb") as handle:
        return handle.read()


def zip_of(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_with_symlink(members: dict[str, bytes], link: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo(link)
        info.create_system = 3  # Unix, whose mode bits say "symbolic link"
        info.external_attr = (0o120777) << 16
        archive.writestr(info, target)
    return buffer.getvalue()


def zip_with_encrypted_member(name: str, data: bytes) -> bytes:
    """A zip whose member says it is encrypted (zipfile cannot write one that is): the
    encryption bit set in its local and central headers' flags."""
    archive = bytearray(zip_of({name: data}, compression=zipfile.ZIP_STORED))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = archive.index(signature)
        archive[start + flags_at] |= 0x1
    return bytes(archive)


def tar_of(
    members: dict[str, bytes],
    *,
    gzip: bool = False,
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for kind, links in ((tarfile.SYMTYPE, symlinks), (tarfile.LNKTYPE, hardlinks)):
            for name, target in (links or {}).items():
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = target
                archive.addfile(info)
    return buffer.getvalue()


def labels_csv(rows: list[tuple[str, str]]) -> bytes:
    lines = ["path,label"] + [f"{path},{label}" for path, label in rows]
    return ("\n".join(lines) + "\n").encode()


def gigapixel_png() -> bytes:
    """A PNG of a few kilobytes that declares 100 million pixels: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()

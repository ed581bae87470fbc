"""DICOM files to 8-bit pixels and a few tags, with pydicom.

A DICOM file is told from its bytes: `DICM` at offset 128, after the preamble. Its pixels go
through the modality LUT (rescale slope and intercept), then to 8 bits with the file's first
window (WindowCenter/WindowWidth, DICOM's linear function) when it has one, else from its own
minimum and maximum; MONOCHROME1 is inverted so that bright is dense, as in MONOCHROME2. RGB
files keep their three channels. Multi-frame files and compressed transfer syntaxes that
pydicom cannot decode without extra plugins are refused.

What a version keeps of the file besides its pixels is `dicom_tags`: the `DESCRIPTIVE_TAGS`
always, and the `PERSONAL_TAGS` only where the project keeps them
(`projects.keep_dicom_personal_tags`). Nothing else of the file is stored: the pixels are
re-encoded as PNG, so every other tag, private tags included, is dropped with the file. Text
burnt into the pixels is not looked for.
"""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import numpy as np

from aiaas.core.images import DEFAULT_MAX_PIXELS, ImageError

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

DESCRIPTIVE_TAGS = (
    "Modality",
    "BodyPartExamined",
    "Rows",
    "Columns",
    "PhotometricInterpretation",
    "BitsStored",
    "PixelSpacing",
    "WindowCenter",
    "WindowWidth",
)
"""Tags that describe the image, not the person: kept in `dicom_tags` whatever the setting."""

PERSONAL_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "PatientAddress",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)
"""The personal tags of DICOM's basic de-identification profile (PS3.15 E.1) that a version
may keep, and only when its project says so: the patient's identity and birth, the ids that
link a file back to a study, the institution and the referring physician."""


def is_dicom(data: bytes) -> bool:
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC


def _tag_value(value: Any) -> Any:
    """A tag's value as JSON holds it: numbers stay numbers, several values a list, the rest
    (names, dates, ids) text."""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        return [_tag_value(item) for item in value]
    if isinstance(value, bool | bytes):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _tags(dataset: Any, keep_personal: bool) -> str:
    names = DESCRIPTIVE_TAGS + (PERSONAL_TAGS if keep_personal else ())
    kept: dict[str, Any] = {}
    for name in names:
        element = dataset.get(name)
        if element is None or element == "":
            continue
        try:
            kept[name] = _tag_value(element)
        except (TypeError, ValueError):
            kept[name] = str(element)
    return json.dumps(kept, sort_keys=True, allow_nan=False, default=str)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        value = next(iter(value), None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def to_8_bits(values: np.ndarray, center: float | None, width: float | None) -> np.ndarray:
    """Values as uint8: DICOM's linear window when there is one, else min-max."""
    values = values.astype(np.float64)
    if center is not None and width is not None and width >= 1:
        low = center - 0.5 - (width - 1) / 2
        high = center - 0.5 + (width - 1) / 2
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) / (high - low) * 255.0
    eight_bits: np.ndarray = np.rint(scaled).astype(np.uint8)
    return eight_bits


def decode_dicom(
    data: bytes, *, name: str, keep_personal: bool, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, str]:
    """A DICOM file's pixels, uint8 (height, width, 1 or 3), and its kept tags as a JSON
    object; `ImageError` naming `name` for a file that cannot or may not be decoded."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.processing import apply_modality_lut

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise ImageError(f"{name} is not a valid DICOM file: {exc}") from None
    if "PixelData" not in dataset:
        raise ImageError(f"{name} is a DICOM file without pixels")
    try:
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"{name} declares no valid size: {exc}") from None
    if rows * columns * max(frames, 1) > max_pixels:
        raise ImageError(f"{name} is {columns}x{rows} pixels, above the limit of {max_pixels}")
    if frames != 1:
        raise ImageError(f"{name} holds {frames} frames: only single-frame DICOM is read")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = dataset.pixel_array
            if dataset.get("PhotometricInterpretation", "").startswith("MONO"):
                pixels = apply_modality_lut(pixels, dataset)
    except (NotImplementedError, RuntimeError) as exc:
        raise ImageError(f"{name}: its pixels cannot be decoded ({exc})") from None
    except (ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
        raise ImageError(f"{name} does not decode: {exc}") from None
    return _channels_last(dataset, np.asarray(pixels), name), _tags(dataset, keep_personal)


def _channels_last(dataset: Any, pixels: np.ndarray, name: str) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        if pixels.dtype == np.uint8:
            return pixels
        return to_8_bits(pixels, None, None)
    if pixels.ndim != 2:
        raise ImageError(f"{name} has pixels of shape {pixels.shape}, not one grey or RGB image")
    grey = to_8_bits(
        pixels, _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    )
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey[:, :, np.newaxis]

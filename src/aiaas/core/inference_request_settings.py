"""The bounds on one prediction request's size, a base of `Config` (docs/configuration.md): its
V2 body, and its images (what those bound: `aiaas.core.serving.image_requests`).

They live apart from config.py to keep that module readable; `Config` inherits them, so they are
plain top-level keys (`inference_max_image_bytes`, `AIAAS_INFERENCE_MAX_IMAGE_BYTES`) like every
other setting.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class InferenceRequestSettings(BaseModel):
    """How large one prediction request may be: its V2 body, its images' encoded bytes and
    their decoded pixels."""

    inference_max_request_bytes: int = Field(
        16 * 1024**2,
        ge=1024,
        description="Largest V2 inference request body accepted. A JSON body costs about ten "
        "times its size in memory while it is parsed.",
    )
    inference_max_image_bytes: int = Field(
        32 * 1024**2,
        ge=1024,
        description="Most encoded image bytes (PNG, JPEG) one prediction request may send, all "
        "its rows together; past it the request is answered 413 before any image is decoded.",
    )
    inference_max_image_pixels: int = Field(
        100_000_000,
        ge=1024,
        description="Most decoded pixels one prediction request's encoded images may have, all "
        "rows together, read from each image's header before it is decoded; past it the "
        "request is answered 413.",
    )

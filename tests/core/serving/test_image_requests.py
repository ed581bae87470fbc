"""Encoded images in prediction requests, without a server: which inputs take images, which
values are encoded images, their decoding and fitting under the per-request bounds (each
refusal a typed error naming the row), the V2 binary BYTES elements that stay bytes, and the
statistics a sample keeps of an image."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from aiaas.core.errors import InputError, PayloadTooLargeError
from aiaas.core.images import ImageError, fit_pixels
from aiaas.core.model_inputs import check_inputs
from aiaas.core.serving.image_requests import (
    ImageInput,
    ImageLimits,
    decode_images,
    image_inputs,
    sends_encoded,
)
from aiaas.core.serving.prediction_samples import row_as_json
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.rest.inference_protocol import INFERENCE_HEADER_CONTENT_LENGTH, parse_infer_request
from image_serving import jpeg, png, random_images

RGB = ImageInput("image", 16, 16, 3, "uint8")
ROOMY = ImageLimits(max_request_bytes=10**7, max_request_pixels=10**7)


def signature(*inputs: TensorSpec) -> ModelSignature:
    output = TensorSpec(name="score", dtype="float32", shape=(-1,))
    return ModelSignature(inputs=inputs, outputs=(output,))


def spec(name: str, dtype: str, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def test_an_image_input_is_rank_4_with_1_or_3_channels_of_uint8_or_float32() -> None:
    found = image_inputs(
        signature(
            spec("image", "uint8", (-1, 32, 24, 3)),
            spec("grey", "float32", (-1, 8, 8, 1)),
            spec("four", "uint8", (-1, 8, 8, 4)),
            spec("wide", "float64", (-1, 8, 8, 3)),
            spec("free", "uint8", (-1, -1, -1, 3)),
            spec("age", "float32", (-1,)),
        )
    )

    assert found == (
        ImageInput("image", 32, 24, 3, "uint8"),
        ImageInput("grey", 8, 8, 1, "float32"),
    )


def test_strings_or_bytes_one_per_row_are_encoded_images_and_pixels_are_not() -> None:
    assert sends_encoded(["aGk=", b"\x89PNG"])
    assert sends_encoded(np.array(["aGk="], dtype=object))
    assert not sends_encoded(random_images(2))
    assert not sends_encoded([random_images(1)[0].tolist()])
    assert not sends_encoded(["aGk=", [1, 2]])
    assert not sends_encoded([])
    assert not sends_encoded(np.array([["aGk="]], dtype=object))


def test_files_of_any_size_and_mode_are_decoded_and_fitted_to_the_model() -> None:
    pixels = random_images(1, 20, 30, seed=1)[0]
    grey = random_images(1, 16, 16, 1, seed=2)[0]
    rows = [png(pixels), base64.b64encode(png(grey)).decode(), jpeg(pixels)]

    decoded = decode_images(RGB, rows, ROOMY)
    as_floats = decode_images(ImageInput("image", 16, 16, 1, "float32"), rows[:1], ROOMY)

    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (3, 16, 16, 3)
    assert (decoded.pixels[0] == fit_pixels(pixels, height=16, width=16, channels=3)).all()
    assert (decoded.pixels[1] == np.repeat(grey, 3, axis=2)).all()
    assert decoded.sizes.tolist() == [[30, 20], [16, 16], [30, 20]]
    expected = fit_pixels(pixels, height=16, width=16, channels=1).astype(np.float32)
    assert as_floats.pixels.dtype == np.float32 and (as_floats.pixels[0] == expected).all()


@pytest.mark.parametrize(
    ("rows", "field", "words"),
    [
        ([b"GIF89a not ours"], "image[0]", "neither a PNG nor a JPEG"),
        (["@@not base64@@"], "image[0]", "not base64"),
        ([png(random_images(1)[0])[:60]], "image[0]", "does not decode"),
        ([png(random_images(1)[0]), 7], "image[1]", "must be an encoded image"),
    ],
    ids=["gif", "not base64", "truncated", "a number"],
)
def test_a_bad_row_is_an_image_error_naming_it(rows: list[object], field: str, words: str) -> None:
    with pytest.raises(ImageError) as refused:
        decode_images(RGB, rows, ROOMY)

    assert list(refused.value.field_errors) == [field]
    assert words in refused.value.message


def test_the_per_request_bounds_are_413_naming_the_row_where_they_were_passed() -> None:
    flat = png(np.full((40, 40, 3), 9, np.uint8))  # 1,600 pixels in a few hundred bytes
    pixels_bound = ImageLimits(max_request_bytes=10**6, max_request_pixels=4_000)
    bytes_bound = ImageLimits(max_request_bytes=len(flat) * 2, max_request_pixels=10**6)

    with pytest.raises(PayloadTooLargeError) as too_many_pixels:
        decode_images(RGB, [flat, flat, flat], pixels_bound)
    with pytest.raises(PayloadTooLargeError) as too_many_bytes:
        decode_images(RGB, [flat, flat, flat], bytes_bound)
    with pytest.raises(ImageError) as one_too_large:
        decode_images(RGB, [png(np.full((70, 70, 3), 9, np.uint8))], pixels_bound)

    assert list(too_many_pixels.value.field_errors) == ["image[2]"]
    assert "inference_max_image_pixels" in too_many_pixels.value.message
    assert list(too_many_bytes.value.field_errors) == ["image[2]"]
    assert "inference_max_image_bytes" in too_many_bytes.value.message
    assert too_many_bytes.value.http_status == 413
    assert one_too_large.value.http_status == 400
    assert "above the limit of 4000" in one_too_large.value.message


def binary_bytes_request(elements: list[bytes]) -> tuple[bytes, str]:
    data = b"".join(struct.pack("<I", len(element)) + element for element in elements)
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(elements)]}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}]})
    return header.encode() + data, str(len(header))


def test_a_v2_binary_bytes_element_that_is_an_image_file_stays_bytes() -> None:
    file = jpeg(random_images(1)[0])
    body, header_length = binary_bytes_request([file, b"text"])

    parsed = parse_infer_request(body, inference_header_content_length=header_length)

    assert parsed.columns["image"].tolist() == [file, "text"]
    assert INFERENCE_HEADER_CONTENT_LENGTH  # the header the length travels in
    # A text input refuses the file as it refuses any value that is not a string.
    text_model = signature(spec("image", "str", (-1,)))
    with pytest.raises(InputError, match="must hold strings"):
        check_inputs(text_model, parsed.columns, max_batch=8)


def test_other_bytes_that_are_not_utf8_are_still_refused() -> None:
    body, header_length = binary_bytes_request([b"\xff\xfe not an image"])

    with pytest.raises(InputError, match="element 0 is not valid UTF-8"):
        parse_infer_request(body, inference_header_content_length=header_length)


def test_a_sampled_image_row_is_its_statistics_not_its_pixels() -> None:
    pixels = np.zeros((2, 16, 16, 3), np.uint8)
    pixels[1, :8] = 255  # half white: mean 127.5, standard deviation 127.5
    sizes = {"image": np.array([[16, 16], [640, 480]])}

    sent = json.loads(row_as_json({"image": pixels, "age": np.array([3.0, 4.0])}, 1, sizes))
    as_tensor = json.loads(row_as_json({"image": pixels}, 1))

    assert sent == {
        "image.brightness": 127.5,
        "image.contrast": 127.5,
        "image.width": 640.0,
        "image.height": 480.0,
        "age": 4.0,
    }
    # A tensor has the model's size, not the size its image was sent at: no size is sampled.
    assert set(as_tensor) == {"image.brightness", "image.contrast"}


def test_check_inputs_takes_image_tensors_of_the_models_size_only() -> None:
    model = signature(spec("image", "uint8", (-1, 16, 16, 3)))
    pixels = random_images(2)

    checked = check_inputs(model, {"image": pixels}, max_batch=8)
    from_floats = check_inputs(model, {"image": pixels.astype(np.float32)}, max_batch=8)
    from_json = check_inputs(model, {"image": pixels.tolist()}, max_batch=8)

    assert checked["image"].dtype == np.uint8 and (checked["image"] == pixels).all()
    assert (from_floats["image"] == pixels).all() and (from_json["image"] == pixels).all()
    with pytest.raises(InputError, match="axis 1 must have 16 values, not 8"):
        check_inputs(model, {"image": random_images(2, 8, 16)}, max_batch=8)
    with pytest.raises(InputError, match="must fit in uint8"):
        check_inputs(model, {"image": pixels.astype(np.int64) + 200}, max_batch=8)
    with pytest.raises(InputError, match="must have rank 4"):
        check_inputs(model, {"image": pixels[:, 0]}, max_batch=8)

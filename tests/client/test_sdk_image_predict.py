"""`Deployment.predict` of an image model against a real `aiaas serve` with the trees extra
loaded: an ONNX graph taking `image` uint8 [N, 16, 16, 3] answers a uint8 array of pixels and a
list of PNG or JPEG files alike, in requests of at most `maxBatchSize`, in order; a corrupt file
raises `InvalidInputError` naming its row."""

from __future__ import annotations

import io

import numpy as np
import pytest

from aiaas.client import Client, Deployment
from aiaas.client.errors import InvalidInputError
from aiaas.core.config import Config, build_config
from aiaas.core.images import decode_image, fit_pixels
from image_serving import expected_scores, image_graph, jpeg, png, random_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return build_config(
        {**config.model_dump(), "disable_plugin_autoload": False, "plugins": ["trees"]}
    )


@pytest.fixture(scope="module")
def deployment(client: Client) -> Deployment:
    client.create_project("sdk-images", name="SDK images")
    project = client.project("sdk-images")
    version = project.upload_model(io.BytesIO(image_graph()), "scorer", progress=False)
    return version.deploy("scorer", max_batch_size=4).wait_ready()


def test_pixels_and_files_are_predicted_alike_in_order(deployment: Deployment) -> None:
    pixels = random_images(10, seed=20)  # three requests of at most 4 rows
    files = [png(image) if index % 2 else jpeg(image) for index, image in enumerate(pixels)]
    files[3] = png(random_images(1, 30, 20, seed=21)[0])  # another size: fitted by the server
    decoded = np.stack(
        [fit_pixels(decode_image(file), height=16, width=16, channels=3) for file in files]
    )

    from_pixels = deployment.predict({"image": pixels}, concurrency=2)
    from_files = deployment.predict({"image": files}, concurrency=2)
    from_decoded = deployment.predict({"image": decoded})

    assert list(from_pixels.columns) == ["score", "brightness"]
    np.testing.assert_allclose(
        from_pixels["score"].to_numpy(), expected_scores(pixels), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_array_equal(from_files["score"].to_numpy(), from_decoded["score"])


def test_a_corrupt_file_raises_invalid_input_naming_its_row(deployment: Deployment) -> None:
    good = png(random_images(1, seed=22)[0])

    with pytest.raises(InvalidInputError) as refused:
        deployment.predict({"image": [good, good, good[:30]]})

    assert "row 2 of image" in str(refused.value)

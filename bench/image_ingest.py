"""Image dataset ingest through the API against Pillow alone, on the same images, in the same run.

Generates `--images` images (default 3,000 of 128x128: RGB shapes on noise, two thirds PNG and
one third JPEG, in five label folders), zips them, starts the platform with `aiaas dev` on a
scratch data dir (embedded PostgreSQL and Redis, a real uvicorn), and uploads the archive with
the streaming REST endpoint, end to end: HTTP, the archive's checks, decoding every image,
profiling, thumbnails, Parquet, encryption, storage, the version row. The baseline decodes the
same files with Pillow in a loop (`Image.open`, `load`, to a numpy array), one after another.

    python bench/image_ingest.py [--images 3000] [--side 128] [--repeat 3]

Both sides run `--repeat` times, interleaved (each upload into a dataset of its own, so none is
answered by deduplication), and the medians are compared. The last line printed is one JSON object;
`ingest_vs_pillow_ratio` is images per second into a version over Pillow's images per second.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from dataset_ingest import PeakMemory, api_process, create_project, settle, start_platform, upload
from PIL import Image, ImageDraw

LABELS = ("circle", "square", "triangle", "cross", "ring")


def generated_image(index: int, side: int) -> tuple[str, bytes]:
    """A shape on noise, deterministic from `index`: its path in the archive and its bytes."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 96, size=(side, side, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    label = LABELS[index % len(LABELS)]
    low, high = side // 4, 3 * side // 4
    colour = tuple(int(value) for value in rng.integers(128, 256, size=3))
    if label == "circle":
        draw.ellipse((low, low, high, high), fill=colour)
    elif label == "square":
        draw.rectangle((low, low, high, high), fill=colour)
    elif label == "triangle":
        draw.polygon([(side // 2, low), (low, high), (high, high)], fill=colour)
    elif label == "cross":
        draw.line((low, low, high, high), fill=colour, width=side // 10)
        draw.line((low, high, high, low), fill=colour, width=side // 10)
    else:
        draw.ellipse((low, low, high, high), outline=colour, width=side // 12)
    buffer = io.BytesIO()
    jpeg = index % 3 == 2
    image.save(buffer, format="JPEG" if jpeg else "PNG", quality=90)
    return f"{label}/{index:06d}.{'jpg' if jpeg else 'png'}", buffer.getvalue()


def write_archive(path: Path, count: int, side: int) -> list[bytes]:
    files = [generated_image(index, side) for index in range(count)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return [data for _, data in files]


def pillow_loop(files: list[bytes]) -> float:
    started = time.perf_counter()
    for data in files:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            np.asarray(image)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    count, repeat = arguments.images, max(1, arguments.repeat)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        archive = scratch / "images.zip"
        files = write_archive(archive, count, arguments.side)
        supervisor, base_url, token = start_platform(scratch / "data")
        try:
            create_project(base_url, token)
            settle(supervisor)
            upload_runs, pillow_runs = [], []
            with PeakMemory(api_process(supervisor)) as memory:
                for run in range(repeat):
                    # Interleaved, so that both sides of a pair see the same load on the machine.
                    pillow_runs.append(pillow_loop(files))
                    elapsed, body = upload(base_url, token, archive, f"images-{run}")
                    upload_runs.append(elapsed)
                    version = body["version"]
                    assert isinstance(version, dict), body
                    assert version["rowCount"] == count, body
                    assert version["sourceFormat"] == "images", body
        finally:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=30)
        archive_bytes = archive.stat().st_size
    pillow_s, upload_s = statistics.median(pillow_runs), statistics.median(upload_runs)
    print(
        json.dumps(
            {
                "images": count,
                "side": arguments.side,
                "archive_bytes": archive_bytes,
                "repeat": repeat,
                "upload_s": round(upload_s, 3),
                "upload_runs_s": [round(run, 3) for run in upload_runs],
                "upload_images_per_s": round(count / upload_s, 1),
                "pillow_s": round(pillow_s, 3),
                "pillow_runs_s": [round(run, 3) for run in pillow_runs],
                "pillow_images_per_s": round(count / pillow_s, 1),
                "ingest_vs_pillow_ratio": round(pillow_s / upload_s, 3),
                "api_peak_rss_bytes": memory.peak,
                "ingest_process_peak_rss_bytes": memory.ingest_peak,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Dataset upload through the SDK against `curl --data-binary`, on the same file, same route.

Generates a fraud-like CSV once (default 1,000,000 rows: an amount, an hour, `--features` float
columns and a 0/1 label, about 1% positive), starts the platform with `aiaas dev` on a scratch
data dir (embedded PostgreSQL and Redis, a real uvicorn), and uploads the file, alternately,
`--repeat` times each (the side that goes first swaps every round):

- sdk: `Client(url, token).project("bench").upload(path, name=..., progress=False)`;
- curl: `curl --data-binary @file` in a subprocess, to the same
  `POST /v1/projects/bench/datasets/<name>/versions?format=csv`, with the bearer token and the
  content type the SDK sends (`application/octet-stream`), and no `Expect: 100-continue`
  (the SDK does not wait for one either).

Each upload goes into a dataset of its own and must answer `created: true`: the server
deduplicates by content within a dataset, so none is answered by an existing version. Each is
timed end to end (the server ingests the whole file before it answers), and the client's own CPU
seconds are reported beside it: the SDK process's, and curl's. `sdk_vs_curl_ratio` is the median
curl time over the median SDK time: 1.0 is as fast, above is faster; the aim is 0.95. One untimed
upload first warms the file's pages and the platform's ingest processes.

    python bench/sdk_upload.py [--rows 1000000] [--repeat 3] [--features 10]

Logs go to stderr; the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from dataset_ingest import create_project, settle, start_platform

from aiaas.client import Client

AIM = 0.95
CONTENT_TYPE = "application/octet-stream"
"""What `Project.upload` sends for a file; the format goes in the query."""
SLICE_ROWS = 200_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fraud_slice(start: int, rows: int, features: int) -> pa.Table:
    """Rows `start` to `start + rows` of a deterministic table: each slice seeded by its start."""
    generator = np.random.default_rng(start)
    values = generator.normal(size=(rows, features)).astype(np.float32)
    amount = np.round(generator.lognormal(3.5, 1.2, size=rows), 2)
    hour = generator.integers(0, 24, size=rows)
    label = (values[:, 0] + 0.5 * values[:, 1] > 2.9).astype(np.int8)
    columns = {"amount": amount, "hour": hour}
    columns.update({f"v{i + 1}": values[:, i] for i in range(features)})
    columns["label"] = label
    return pa.table(columns)


def generate_csv(path: Path, rows: int, features: int) -> None:
    """Written in slices, so even large files need little memory."""
    first = fraud_slice(0, min(SLICE_ROWS, rows), features)
    with pa_csv.CSVWriter(path, first.schema) as writer:
        writer.write_table(first)
        for start in range(SLICE_ROWS, rows, SLICE_ROWS):
            writer.write_table(fraud_slice(start, min(SLICE_ROWS, rows - start), features))


def route(base_url: str, dataset: str) -> str:
    return f"{base_url}/v1/projects/bench/datasets/{dataset}/versions?format=csv"


def check_created(created: bool, row_count: int, rows: int, dataset: str) -> None:
    """A deduplicated answer (or a short read) would time nothing worth comparing."""
    if not created or row_count != rows:
        raise RuntimeError(f"{dataset}: created={created}, {row_count} rows of {rows}")


def sdk_run(client: Client, path: Path, dataset: str, rows: int) -> tuple[float, float]:
    """Wall and this process's CPU seconds of one SDK upload."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    version = client.project("bench").upload(path, name=dataset, progress=False)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    check_created(version.created, version.row_count, rows, dataset)
    return elapsed, cpu


def curl_run(base_url: str, token: str, path: Path, dataset: str, rows: int) -> tuple[float, float]:
    """Wall and curl's CPU seconds of one `curl --data-binary` upload."""
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--fail-with-body",
        "--max-time",
        "900",
        "--data-binary",
        f"@{path}",
        "-H",
        f"authorization: Bearer {token}",
        "-H",
        f"content-type: {CONTENT_TYPE}",
        "-H",
        "expect:",
        route(base_url, dataset),
    ]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    answer = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if answer.returncode != 0:
        raise RuntimeError(f"curl exited {answer.returncode}: {answer.stderr!r} {answer.stdout!r}")
    body = json.loads(answer.stdout)
    check_created(body["created"], body["version"]["rowCount"], rows, dataset)
    cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    return elapsed, cpu


def rounded(values: list[float]) -> list[float]:
    return [round(value, 3) for value in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--features", type=int, default=10)
    arguments = parser.parse_args()
    rows, repeat = arguments.rows, max(1, arguments.repeat)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        csv_path = scratch / "fraud.csv"
        log(f"writing {rows} rows to {csv_path}")
        generate_csv(csv_path, rows, arguments.features)
        size = csv_path.stat().st_size
        log(f"{size / 1e6:.1f} MB; starting aiaas dev")
        supervisor, base_url, token = start_platform(scratch / "data")
        try:
            create_project(base_url, token)
            settle(supervisor)
            sdk_runs: list[float] = []
            sdk_cpu: list[float] = []
            curl_runs: list[float] = []
            curl_cpu: list[float] = []
            with Client(base_url, token, timeout=120) as client:
                log("warm-up upload (untimed)")
                curl_run(base_url, token, csv_path, "warm-up", rows)
                for round_number in range(repeat):
                    sides = ["sdk", "curl"] if round_number % 2 == 0 else ["curl", "sdk"]
                    for side in sides:
                        dataset = f"{side}-{round_number}"
                        if side == "sdk":
                            elapsed, cpu = sdk_run(client, csv_path, dataset, rows)
                            sdk_runs.append(elapsed)
                            sdk_cpu.append(cpu)
                        else:
                            elapsed, cpu = curl_run(base_url, token, csv_path, dataset, rows)
                            curl_runs.append(elapsed)
                            curl_cpu.append(cpu)
                        log(f"round {round_number} {side}: {elapsed:.2f} s, client cpu {cpu:.2f} s")
        finally:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=60)
    sdk_s, curl_s = statistics.median(sdk_runs), statistics.median(curl_runs)
    ratio = curl_s / sdk_s
    megabytes = size / 1e6
    print(
        json.dumps(
            {
                "rows": rows,
                "features": arguments.features,
                "file_bytes": size,
                "repeat": repeat,
                "sdk_s": round(sdk_s, 3),
                "sdk_runs_s": rounded(sdk_runs),
                "sdk_mb_per_s": round(megabytes / sdk_s, 1),
                "sdk_client_cpu_s": round(statistics.median(sdk_cpu), 3),
                "curl_s": round(curl_s, 3),
                "curl_runs_s": rounded(curl_runs),
                "curl_mb_per_s": round(megabytes / curl_s, 1),
                "curl_client_cpu_s": round(statistics.median(curl_cpu), 3),
                "sdk_vs_curl_ratio": round(ratio, 3),
                "aim": AIM,
                "meets_aim": ratio >= AIM,
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()

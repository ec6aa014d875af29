"""Real etcd 3.4 members on loopback for the integration tests and benchmarks.

Every member listens on 127.0.0.1 on ports picked at run time, keeps its data and
log in its own directory, and is killed by ``stop()`` (or on leaving
:func:`running_etcd` / :meth:`Etcds.stop_all`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.loopback import free_ports, wait_until_ready

ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")

# Fast elections on loopback keep bootstrap to a few seconds.
TUNING = ("--heartbeat-interval=50", "--election-timeout=500")


class EtcdMember:
    """One etcd process; ``start`` it with the flags that say how it finds its cluster."""

    def __init__(
        self, directory: Path, name: str = "default", *, host: str = "127.0.0.1", netns: str = ""
    ) -> None:
        """``netns``: run inside that network namespace, listening on ``host`` there."""
        self.name = name
        self.directory = directory
        self.netns = netns
        client_port, peer_port = free_ports(2)
        self.client_url = f"http://{host}:{client_port}"
        self.peer_url = f"http://{host}:{peer_port}"
        self.log = directory / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"etcd {self.name} is not running")
        return self._process

    def start(self, *flags: str) -> None:
        """Start etcd with the loopback URLs, :data:`TUNING` and ``flags``; does not wait."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            *(("ip", "netns", "exec", self.netns) if self.netns else ()),
            str(ETCD),
            f"--name={self.name}",
            f"--data-dir={self.directory / 'data'}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            *TUNING,
            *flags,
        ]
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def start_alone(self, *flags: str, timeout: float = 30.0) -> None:
        """Start as a one-member cluster (with ``flags``) and wait until it is healthy."""
        self.start(f"--initial-cluster={self.name}={self.peer_url}", *flags)
        wait_until_ready(
            f"etcd at {self.client_url}", self.process, self.log, self.healthy, timeout
        )

    def healthy(self) -> bool:
        if self.netns:
            probe = [str(ETCDCTL), f"--endpoints={self.client_url}", "endpoint", "health"]
            done = subprocess.run(
                ["ip", "netns", "exec", self.netns, *probe],
                capture_output=True,
                timeout=10,
                check=False,
            )
            return done.returncode == 0
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it (a paused one too) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(timeout=30)


@contextmanager
def running_etcd(directory: Path, name: str = "default", *flags: str) -> Iterator[EtcdMember]:
    """A healthy one-member etcd cluster (started with ``flags``), killed on the way out."""
    member = EtcdMember(directory, name)
    try:
        member.start_alone(*flags)
        yield member
    finally:
        member.stop()


class Etcds:
    """Starts etcd members under one directory and guarantees they are gone afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members: list[EtcdMember] = []

    def start(self, name: str, *flags: str) -> EtcdMember:
        member = EtcdMember(self.root / name, name)
        self.members.append(member)
        member.start(*flags)
        return member

    def stop_all(self) -> None:
        for member in self.members:
            member.stop()

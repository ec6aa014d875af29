"""Nodes for flanneld in network namespaces: a hub with a bridge, etcd on it, and one
namespace per node joined to the bridge by a veth pair.

Nothing outside the namespaces this creates is touched (the host's own interfaces,
routes and firewall stay as they are); :meth:`Underlay.close` kills every process
and deletes every namespace, whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.etcd_support import ETCDCTL, EtcdMember

ROOT = Path(__file__).resolve().parents[1]
HUB_NET = ipaddress.IPv4Network("172.31.250.0/24")
PYTHON = "/usr/bin/python3"  # the Debian python3 the guests run

# One ICMP echo from a source address to a destination, in the namespace it runs in.
PING = r"""
import os, socket, struct, sys, time
src, dst = sys.argv[1], sys.argv[2]
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"flannel"
packet = body[:2] + struct.pack("!H", checksum(body + b"\0")) + body[4:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.bind((src, 0))
sock.settimeout(2)
sock.sendto(packet, (dst, 0))
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    data, peer = sock.recvfrom(2048)
    head = (data[0] & 0x0F) * 4
    kind, _, _, got, _ = struct.unpack("!BBHHH", data[head:head + 8])
    if peer[0] == dst and kind == 0 and got == ident:
        sys.exit(0)
sys.exit(1)
"""


def ping(netns: str, source: str, destination: str) -> bool:
    """One ICMP echo from ``source`` to ``destination`` inside ``netns``, answered."""
    argv = ["ip", "netns", "exec", netns, PYTHON, "-c", PING, source, destination]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Node:
    def __init__(self, underlay: Underlay, index: int) -> None:
        self.underlay = underlay
        self.index = index
        self.netns = f"{underlay.tag}-n{index}"
        self.address = str(HUB_NET.network_address + 10 + index)
        self.directory = underlay.directory / f"node{index}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.subnet_file = self.directory / "subnet.env"
        self.docker_file = self.directory / "docker_opts.env"
        self.log = self.directory / "flanneld.log"
        self.process: subprocess.Popen[bytes] | None = None

    def ip(self, *argv: str, check: bool = True) -> str:
        return sh("ip", "-n", self.netns, *argv, check=check)

    def start(self, *extra: str, iface: str = "eth0") -> subprocess.Popen[bytes]:
        argv = [
            "ip", "netns", "exec", self.netns, PYTHON, "-c",
            "import sys; from provisioner.guest.flannel.flanneld import main; sys.exit(main())",
            f"-etcd-endpoints={self.underlay.etcd.client_url}",
            f"-iface={iface}",
            f"-subnet-file={self.subnet_file}",
            f"-docker-opts-file={self.docker_file}",
            f"-subnet-lease-ttl={self.underlay.lease_ttl}",
            *extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self.process

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=20)

    def env(self) -> dict[str, str]:
        text = self.subnet_file.read_text() if self.subnet_file.exists() else ""
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(self.env()["FLANNEL_SUBNET"]).network

    def wait_for_lease(self, timeout: float = 30.0) -> ipaddress.IPv4Network:
        wait_for(
            f"{self.netns}'s subnet file ({self.log})",
            lambda: "FLANNEL_SUBNET" in self.env(),
            timeout,
        )
        return self.subnet

    def ready(self) -> bool:
        """flanneld logged that it holds its lease and programmed the peers (this run)."""
        return "waiting for peers" in self.log.read_text().split("Exiting cleanly")[-1]

    def add_docker_bridge(self) -> None:
        """What docker does with --bip: a bridge holding FLANNEL_SUBNET's address."""
        self.ip("link", "add", "docker0", "type", "bridge", check=False)
        self.ip("addr", "replace", self.env()["FLANNEL_SUBNET"], "dev", "docker0")
        self.ip("link", "set", "docker0", "up")

    def add_container(self) -> str:
        """A namespace behind docker0 with the subnet's second address, as a container;
        the node forwards, with FORWARD's policy DROP as docker leaves it. Returns the
        container's address."""
        container = f"{self.netns}-c"
        self.underlay.add_netns(container)
        self.ip("link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", container)
        self.ip("link", "set", "c0", "master", "docker0", "up")
        address = ipaddress.IPv4Interface(
            (int(self.subnet.network_address) + 2, self.subnet.prefixlen)
        )
        sh("ip", "-n", container, "addr", "add", str(address), "dev", "eth0")
        sh("ip", "-n", container, "link", "set", "eth0", "up")
        sh("ip", "-n", container, "route", "add", "default", "via", self.bridge_address())
        sh("ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", self.netns, "iptables", "-w", "-P", "FORWARD", "DROP")
        return str(address.ip)

    def bridge_address(self) -> str:
        return self.env()["FLANNEL_SUBNET"].split("/")[0]

    def pings(self, other: Node) -> bool:
        return ping(self.netns, self.bridge_address(), other.bridge_address())

    def routes(self) -> str:
        return self.ip("-4", "route", "show")


class Underlay:
    """The hub namespace (bridge + etcd) and the node namespaces."""

    def __init__(self, directory: Path, lease_ttl: int = 30) -> None:
        self.directory = directory
        self.tag = f"flt{os.getpid() % 100000}"
        self.hub = f"{self.tag}-hub"
        self.lease_ttl = lease_ttl
        self.nodes: list[Node] = []
        self.namespaces: list[str] = []
        self.etcd = EtcdMember(
            directory / "etcd", host=str(HUB_NET.network_address + 1), netns=self.hub
        )

    def add_netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def start(self, count: int) -> list[Node]:
        self.add_netns(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "addr", "add", f"{HUB_NET.network_address + 1}/24", "dev", "br0")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for index in range(count):
            node = Node(self, index)
            self.add_netns(node.netns)
            sh("ip", "-n", self.hub, "link", "add", f"v{index}", "type", "veth",
               "peer", "name", "eth0", "netns", node.netns)  # fmt: skip
            sh("ip", "-n", self.hub, "link", "set", f"v{index}", "master", "br0", "up")
            node.ip("addr", "add", f"{node.address}/24", "dev", "eth0")
            node.ip("link", "set", "eth0", "up")
            self.nodes.append(node)
        self.etcd.start_alone()
        return self.nodes

    def etcdctl(self, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.hub, str(ETCDCTL),
                  f"--endpoints={self.etcd.client_url}", *argv)  # fmt: skip

    def set_config(self, config: str) -> None:
        self.etcdctl("put", "/coreos.com/network/config", config)

    def lease_keys(self) -> list[str]:
        out = self.etcdctl("get", "--prefix", "--keys-only", "/coreos.com/network/subnets/")
        return sorted(line for line in out.splitlines() if line.strip())

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.etcd.stop()
        for name in reversed(self.namespaces):
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=30, check=False
            )


def can_run() -> str:
    """Why these tests cannot run here, or ""."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if not Path(PYTHON).exists():
        return f"needs {PYTHON}"
    if sys.platform != "linux":
        return "needs Linux"
    return ""

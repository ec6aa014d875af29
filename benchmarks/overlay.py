"""flannel's overlay on a real lab: time to a lease per node, and container-to-container
round trips and TCP throughput across nodes against the nodes' own addresses.

Everything runs through `lab exec` as a user would: busybox ``ping`` for round trips,
``dd`` into busybox ``nc`` for throughput, timed from ``/proc/uptime`` before and after
the whole transfer (the busybox image's dd prints no timing; the receiver's pace bounds the
sender's, and nc ends when the receiver has read everything and hung up). The underlay is
the same pair of nodes on the lab network, measured in the same run, so the figures are
ratios against a floor of the same moment.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.lab import LAB_COMMAND
from provisioner.errors import LabError

PORT = 5001
COMMAND_TIMEOUT = 600.0
_RTT = re.compile(r"round-trip min/avg/max = [\d.]+/(?P<avg>[\d.]+)/[\d.]+ ms")
_ELAPSED = re.compile(r"^transfer (?P<start>[\d.]+) (?P<end>[\d.]+)$", re.MULTILINE)
_LEASE = re.compile(r"^\[\s*(?P<at>[\d.]+)\].*Allocated lease", re.MULTILINE)


def parse_rtt_ms(ping_output: str) -> float:
    """The average round trip of busybox ping's summary line."""
    found = _RTT.search(ping_output)
    if found is None:
        raise LabError(f"no round-trip summary in ping's output: {ping_output.strip()[-200:]!r}")
    return float(found["avg"])


def parse_transfer_mb_per_s(output: str, size_mb: int) -> float:
    """MB/s (10^6 bytes) of ``size_mb`` MB sent by a `send` line, from its uptime stamps."""
    found = _ELAPSED.search(output)
    if found is None:
        raise LabError(f"no transfer timing in the sender's output: {output.strip()[-200:]!r}")
    return size_mb / max(float(found["end"]) - float(found["start"]), 0.01)


def parse_lease_seconds(journal: str) -> float | None:
    """Seconds from the node's boot to flanneld's "Allocated lease" (short-monotonic journal)."""
    found = _LEASE.search(journal)
    return float(found["at"]) if found else None


@dataclass(frozen=True)
class PathFigures:
    """One path between two nodes: round trip and TCP throughput."""

    rtt_ms: float
    mb_per_s: float


@dataclass(frozen=True)
class OverlayFigures:
    backend: str
    lease_seconds: dict[str, float | None]  # node -> boot to lease
    underlay: PathFigures
    overlay: PathFigures

    @property
    def throughput_ratio(self) -> float:
        return self.overlay.mb_per_s / self.underlay.mb_per_s

    @property
    def rtt_ratio(self) -> float:
        return self.overlay.rtt_ms / self.underlay.rtt_ms


def send(size_mb: int, nc: str, target: str) -> str:
    """A shell line that pushes ``size_mb`` MB to ``target``'s sink and prints
    ``transfer START END`` in seconds of uptime (10 ms resolution) around it."""
    return (
        "read start rest < /proc/uptime; "
        f"dd if=/dev/zero bs=1000000 count={size_mb} 2>/dev/null | {nc} -w 10 {target} {PORT}; "
        'read end rest < /proc/uptime; echo "transfer $start $end"'
    )


class LabShell:
    """`lab exec` in one lab directory."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir

    def run(self, node: str, *argv: str, check: bool = True) -> str:
        command = [*LAB_COMMAND, "-C", str(self.lab_dir), "exec", node, "--", *argv]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        if check and done.returncode != 0:
            raise LabError(
                f"{node}: `{' '.join(argv)}` exited {done.returncode}: {done.stdout} {done.stderr}"
            )
        return done.stdout + done.stderr


def measure(shell: LabShell, nodes: Sequence[tuple[str, str]], backend: str, *,
            size_mb: int, pings: int) -> OverlayFigures:  # fmt: skip
    """Figures between the first two of ``nodes`` (name, lab address)."""
    (client, _client_ip), (server, server_ip) = nodes[0], nodes[1]
    leases = {
        name: parse_lease_seconds(
            shell.run(name, "sudo", "journalctl", "-u", "flanneld", "-o", "short-monotonic")
        )
        for name, _ip in nodes
    }
    # A sink answers every connection (-ll) with a reader that drops the data and says
    # nothing (a plain `nc -l` with stdin at /dev/null hangs up at once: dd then dies of
    # SIGPIPE without its summary).
    sink = ("nc", "-ll", "-p", str(PORT), "-e", "sh", "-c", "cat > /dev/null")
    # the underlay: the nodes themselves on the lab network (a unit of its own, so the
    # sink outlives the SSH session that starts it)
    shell.run(server, "sudo", "systemctl", "stop", "bench-sink", check=False)
    shell.run(server, "sudo", "systemd-run", "--unit", "bench-sink", "busybox", *sink)
    # the overlay: a container on each node (docker starts on first use)
    shell.run(server, "sudo", "docker", "rm", "-f", "bench-sink", check=False)
    shell.run(server, "sudo", "docker", "run", "-d", "--name", "bench-sink", "busybox", *sink)
    shell.run(client, "sudo", "docker", "rm", "-f", "bench-source", check=False)
    shell.run(client, "sudo", "docker", "run", "-d", "--name", "bench-source", "busybox",
              "sleep", "3600")  # fmt: skip
    container_ip = shell.run(
        server, "sudo", "docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "bench-sink"
    ).strip()
    time.sleep(2)  # the sinks listen
    in_source = ("sudo", "docker", "exec", "bench-source")
    try:
        host_rtt = shell.run(client, "sudo", "busybox", "ping", "-q", "-c", str(pings), server_ip)
        host_send = shell.run(client, "sh", "-c", send(size_mb, "busybox nc", server_ip))
        underlay = PathFigures(parse_rtt_ms(host_rtt), parse_transfer_mb_per_s(host_send, size_mb))
        rtt = shell.run(client, *in_source, "ping", "-q", "-c", str(pings), container_ip)
        sent = shell.run(client, *in_source, "sh", "-c", send(size_mb, "nc", container_ip))
        overlay = PathFigures(parse_rtt_ms(rtt), parse_transfer_mb_per_s(sent, size_mb))
    finally:
        shell.run(server, "sudo", "systemctl", "stop", "bench-sink", check=False)
        for node, name in ((server, "bench-sink"), (client, "bench-source")):
            shell.run(node, "sudo", "docker", "rm", "-f", name, check=False)
    return OverlayFigures(backend, leases, underlay, overlay)

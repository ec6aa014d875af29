"""flannel on the session's real lab: containers on two nodes, started by fleet, reach
each other by their own addresses over the overlay (ping and a TCP round trip), and
again after the node running one of them restarts its flanneld (same subnet kept).

Follows the seeds' flannel section: every node leases a subnet out of one network,
docker takes its bridge from the lease, a container on one node talks to a container
on another directly, with no port mapping (flannel-io/flannel Documentation/running.md).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.vm.conftest import Lab

pytestmark = pytest.mark.vm

PORT = 7000
# A busybox container on one machine, answering "pong <name>" on TCP 7000 to every
# connection (busybox nc: -ll listens again after each one).
UNIT = """\
[Unit]
Description=overlay check {name}
After=docker.service
Requires=docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker rm -f {name}
ExecStart=/usr/bin/docker run --rm --name {name} busybox \
nc -ll -p {port} -e /bin/echo pong {name}
ExecStop=/usr/bin/docker stop -t 2 {name}

[X-Fleet]
MachineID={machine_id}
"""
SIDES = {"overlay-a": "core-01", "overlay-b": "core-02"}


def _active(lab: Lab, unit: str) -> bool:
    listing = lab.run("fleetctl", "list-units", "--no-legend", check=False).stdout
    return any(
        line.split()[:1] == [unit] and line.split()[2:4] == ["active", "running"]
        for line in listing.splitlines()
    )


def _address(lab: Lab, node: str, container: str) -> str:
    found = lab.run(
        "exec", node, "--", "sudo", "docker", "inspect", "-f",
        "{{.NetworkSettings.IPAddress}}", container, check=False,
    )  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 else ""


def _talk(lab: Lab, node: str, container: str, peer: str, peer_name: str) -> None:
    ping = lab.run("exec", node, "--", "sudo", "docker", "exec", container,
                   "ping", "-c", "2", "-W", "5", peer, check=False)  # fmt: skip
    assert ping.returncode == 0, f"{container} on {node} cannot ping {peer}: {ping.stdout}"
    echo = lab.run("exec", node, "--", "sudo", "docker", "exec", container,
                   "nc", "-w", "10", peer, str(PORT), check=False)  # fmt: skip
    assert f"pong {peer_name}" in echo.stdout, (
        f"{container} on {node}: no TCP answer from {peer}:{PORT}: {echo.stdout} {echo.stderr}"
    )


def test_containers_on_two_nodes_talk_over_the_overlay(lab: Lab, tmp_path: Path) -> None:
    status = {n["name"]: n for n in lab.status()["nodes"]}
    subnets = {name: node["flannel_subnet"] for name, node in status.items()}
    units = []
    for name, node in SIDES.items():
        unit = tmp_path / f"{name}.service"
        machine_id = status[node]["machine_id"]
        unit.write_text(UNIT.format(name=name, machine_id=machine_id, port=PORT))
        units.append(str(unit))
    lab.run("fleetctl", "start", *units, timeout=600)
    try:
        addresses = {}
        for name, node in SIDES.items():
            lab.wait_for(f"{name}.service active", lambda n=name: _active(lab, f"{n}.service"),
                         600)  # fmt: skip
            address = lab.wait_for(f"{name}'s address", lambda n=name, h=node: _address(lab, h, n),
                                   300)  # fmt: skip
            # docker took its bridge from the node's lease (--bip from flanneld)
            assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network(subnets[node]), (
                f"{name} on {node} has {address}, outside the node's lease {subnets[node]}"
            )
            addresses[name] = address
        _talk(lab, "core-01", "overlay-a", addresses["overlay-b"], "overlay-b")
        _talk(lab, "core-02", "overlay-b", addresses["overlay-a"], "overlay-a")

        # flanneld restarted on core-02: the same subnet, the peers' routes kept
        lab.run("systemctl", "core-02", "restart", "flanneld.service", timeout=300)
        lab.wait_for(
            "flanneld active again on core-02",
            lambda: lab.run("systemctl", "core-02", "is-active", "flanneld.service",
                            check=False).stdout.strip() == "active",
            120,
        )  # fmt: skip
        assert lab.node_status("core-02")["flannel_subnet"] == subnets["core-02"]
        _talk(lab, "core-01", "overlay-a", addresses["overlay-b"], "overlay-b")
        _talk(lab, "core-02", "overlay-b", addresses["overlay-a"], "overlay-a")
    finally:
        lab.run("fleetctl", "destroy", *(f"{n}.service" for n in SIDES), check=False,
                timeout=300)  # fmt: skip

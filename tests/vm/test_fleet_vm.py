"""fleet on the session's real 3-node lab: fleetd driving the guests' real systemd.

Scenarios: Replaces moving the replaced unit to another machine, and a second
fleetd claiming a live machine's ID being refused while the real one keeps its
place.

Every test leaves the lab as it found it: its units destroyed and unloaded.
Runs before test_lab.py, whose last test destroys the lab.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.vm.conftest import SEED_METADATA, Lab

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

T = TypeVar("T")

HELLO = """[Unit]
Description=Hello World

[Service]
ExecStart=/bin/bash -c "while true; do echo \\"Hello, world\\"; sleep 1; done"
"""
HELLO_HASH = "e55c0ae"  # fleet's hash of exactly this file (Documentation/using-the-client.md)
WEB_NODES = ("core-01", "core-02")
DB_NODE = "core-03"
UNITS_DIR = "/run/fleet/units"
REJOIN_TIMEOUT = 600.0  # a killed TCG guest: boot, etcd member back, fleetd registered


def service(description: str, xfleet: str = "") -> str:
    """A long-running service with an optional [X-Fleet] section."""
    text = f"[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/sleep 100000\n"
    return text + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else "")


class FleetctlError(AssertionError):
    """fleetctl exited non-zero (waits retry it: etcd may be slow under TCG)."""


@dataclass(frozen=True)
class Node:
    name: str
    machine_id: str
    ip: str

    @property
    def legend(self) -> str:
        return f"{self.machine_id[:8]}.../{self.ip}"


@dataclass
class Fleet:
    """fleetctl and systemd views of the lab, plus what a test must undo."""

    lab: Lab
    nodes: dict[str, Node]
    workdir: Path
    units: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    fleet_stopped: list[str] = field(default_factory=list)

    # -- commands ------------------------------------------------------------------------
    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("fleetctl", *args, check=False, timeout=300)

    def ctl_ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.ctl(*args)
        if result.returncode != 0:
            raise FleetctlError(
                f"fleetctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def unit_file(self, name: str, text: str) -> str:
        """Write a local unit file (uploaded by `lab fleetctl`) and destroy it at teardown."""
        path = self.workdir / name
        path.write_text(text)
        if name not in self.units:
            self.units.append(name)
        return str(path)

    def systemctl(self, node: str, *args: str) -> str:
        return self.lab.run("systemctl", node, *args, check=False, timeout=120).stdout.strip()

    def exec(self, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("exec", node, "--", *argv, check=False, timeout=300)

    # -- views ---------------------------------------------------------------------------
    def node_of(self, machine_column: str) -> str:
        machine_id = machine_column.split("/", maxsplit=1)[0]
        for node in self.nodes.values():
            if node.machine_id == machine_id:
                return node.name
        raise AssertionError(f"fleet lists a machine no node has: {machine_column!r}")

    def active(self) -> dict[str, list[str]]:
        """unit -> nodes where fleet reports it active/running (`list-units`)."""
        listing = self.ctl_ok(
            "list-units", "--no-legend", "--full", "--fields=unit,machine,active,sub"
        ).stdout
        running: dict[str, list[str]] = {}
        for line in listing.splitlines():
            unit, machine, active, sub = line.split("\t")
            if (active, sub) == ("active", "running"):
                running.setdefault(unit, []).append(self.node_of(machine))
        return {unit: sorted(nodes) for unit, nodes in running.items()}

    def targets(self) -> dict[str, str]:
        """unit -> node it is scheduled to, `global`, or `-` (`list-unit-files`)."""
        listing = self.ctl_ok(
            "list-unit-files", "--no-legend", "--full", "--fields=unit,target"
        ).stdout
        found = {}
        for line in listing.splitlines():
            unit, target = line.split("\t")
            found[unit] = target if target in ("-", "global") else self.node_of(target)
        return found

    def machines(self) -> list[str]:
        """Nodes `list-machines` shows, checking each row's IP and metadata."""
        listing = self.ctl_ok("list-machines", "--no-legend", "--full").stdout
        names = []
        for line in listing.splitlines():
            machine, ip, metadata = line.split("\t")
            name = self.node_of(machine)
            assert (ip, metadata) == (self.nodes[name].ip, SEED_METADATA[name]), line
            names.append(name)
        return names

    def systemd_active(self, pattern: str) -> dict[str, set[str]]:
        """node -> services matching ``pattern`` that the node's systemd runs."""
        result = self.lab.run(
            "exec", "--all", "--",
            "systemctl", "list-units", "--type=service", "--state=active",
            "--no-legend", "--plain", pattern,
            check=False, timeout=300,
        )  # fmt: skip
        running: dict[str, set[str]] = {name: set() for name in self.nodes}
        for line in result.stdout.splitlines():
            prefix, _, rest = line.partition("] ")
            if prefix.lstrip("[") in running and rest.split():
                running[prefix.lstrip("[")].add(rest.split()[0])
        return running

    def fleet_files(self) -> dict[str, list[str]]:
        """node -> unit files in fleet's units directory."""
        result = self.lab.run(
            "exec", "--all", "--", "ls", "-1A", UNITS_DIR, check=False, timeout=300
        )
        files: dict[str, list[str]] = {name: [] for name in self.nodes}
        for line in result.stdout.splitlines():
            prefix, _, rest = line.partition("] ")
            if prefix.lstrip("[") in files and rest.strip():
                files[prefix.lstrip("[")].append(rest.strip())
        return files

    def wait(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Poll ``check``; a fleetctl that fails meanwhile (etcd busy) counts as "not yet"."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except FleetctlError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(1.0)
        raise AssertionError(
            f"gave up after {timeout:.0f}s waiting for {what}; last: {last}; logs: {self.lab.logs}"
        )

    # -- faults --------------------------------------------------------------------------
    def kill(self, node: str) -> None:
        self.killed.append(node)
        self.lab.run("kill", node)

    def stop_fleet(self, node: str) -> None:
        self.fleet_stopped.append(node)
        self.lab.run("systemctl", node, "stop", "fleet.service", timeout=300)

    def start_fleet(self, node: str) -> None:
        self.lab.run("systemctl", node, "start", "fleet.service", timeout=300)
        self.fleet_stopped.remove(node)
        self.wait(f"{node} back in list-machines", lambda: node in self.machines(), 120)

    def revive(self, node: str) -> None:
        self.lab.run("start", node, timeout=900)
        self.killed.remove(node)

        def rejoined() -> bool:
            status = lab_status(self.lab)
            found = [n for n in status["nodes"] if n["name"] == node] if status else []
            return bool(found) and found[0]["etcd_healthy"] and found[0]["fleet_listed"]

        self.wait(f"{node} healthy in etcd and listed by fleet", rejoined, REJOIN_TIMEOUT)

    # -- teardown ------------------------------------------------------------------------
    def clean_up(self) -> None:
        if self.units:
            self.wait(f"fleetctl destroy {' '.join(self.units)}", self.destroy_all, 120)
        for node in list(self.fleet_stopped):
            self.start_fleet(node)
        for node in list(self.killed):
            self.revive(node)
        self.wait("a healthy lab: 3 machines, no units", self.healthy, 180)

    def destroy_all(self) -> bool:
        self.ctl_ok("destroy", *self.units)
        return True

    def healthy(self) -> bool:
        return (
            sorted(self.machines()) == sorted(self.nodes)
            and self.ctl_ok("list-units", "--no-legend").stdout == ""
            and self.ctl_ok("list-unit-files", "--no-legend").stdout == ""
            and not any(self.fleet_files().values())
        )


def lab_status(lab: Lab) -> dict[str, Any] | None:
    """`lab status --json`, or None while the lab is too busy to answer it."""
    result = lab.run("status", "--json", check=False, timeout=300)
    if result.returncode != 0:
        return None
    status: dict[str, Any] = json.loads(result.stdout)
    return status


@pytest.fixture(scope="module")
def nodes(lab: Lab) -> dict[str, Node]:
    status = lab.wait_for("`lab status --json` to answer", lambda: lab_status(lab), 300)
    found = {
        node["name"]: Node(node["name"], node["machine_id"], node["ip"]) for node in status["nodes"]
    }
    assert sorted(found) == sorted(SEED_METADATA)
    return found


@pytest.fixture
def fleet(lab: Lab, nodes: dict[str, Node], tmp_path: Path) -> Iterator[Fleet]:
    helper = Fleet(lab, nodes, tmp_path)
    helper.wait("a healthy lab: 3 machines, no units", helper.healthy, 180)
    try:
        yield helper
    finally:
        helper.clean_up()


def lowest(nodes: dict[str, Node], names: tuple[str, ...] | None = None) -> Node:
    """The node fleet's scheduler picks among equally loaded ones (lowest machine ID)."""
    pool = [nodes[name] for name in names] if names else list(nodes.values())
    return min(pool, key=lambda node: node.machine_id)


def test_replaces_moves_the_replaced_unit_away(fleet: Fleet) -> None:
    host = lowest(fleet.nodes)
    old = fleet.unit_file("old.service", service("old"))
    assert fleet.ctl_ok("start", old).stdout == f"Unit old.service launched on {host.legend}\n"
    rack = dict(pair.split("=") for pair in SEED_METADATA[host.name].split(","))["rack"]
    new = fleet.unit_file(
        "new.service", service("new", f"Replaces=old.service\nMachineMetadata=rack={rack}")
    )
    assert fleet.ctl_ok("start", new).stdout == f"Unit new.service launched on {host.legend}\n"

    def moved() -> dict[str, list[str]] | None:
        active = fleet.active()
        old_on = active.get("old.service", [])
        if active.get("new.service") == [host.name] and len(old_on) == 1 and old_on != [host.name]:
            return active
        return None

    active = fleet.wait("old.service to move off the machine new.service replaced it on", moved, 90)
    elsewhere = active["old.service"][0]
    assert fleet.targets() == {"new.service": host.name, "old.service": elsewhere}
    assert fleet.systemctl(host.name, "is-active", "new.service") == "active"
    assert fleet.systemctl(host.name, "is-active", "old.service") != "active"
    assert fleet.systemctl(elsewhere, "is-active", "old.service") == "active"


def test_a_second_fleetd_with_a_taken_machine_id_is_refused(fleet: Fleet) -> None:
    twin_on, taken = fleet.nodes["core-01"], fleet.nodes["core-02"]
    # A second fleetd on core-01 claiming core-02's machine ID (read from a file of its
    # own; etcd on 127.0.0.1 as fleet.service uses), with a short agent_ttl, no engine
    # and its own units directory; `timeout` bounds it should it wrongly stay up.
    script = (
        'dir=$(mktemp -d) && printf "%s\\n" "$1" > "$dir/machine-id" && '
        'FLEET_MACHINE_ID_FILE="$dir/machine-id" FLEET_UNITS_DIRECTORY="$dir/units" '
        "FLEET_AGENT_TTL=5s FLEET_DISABLE_ENGINE=true timeout 120 /usr/bin/fleetd; "
        'status=$?; rm -rf "$dir"; exit $status'
    )
    started = time.monotonic()
    twin = fleet.exec(twin_on.name, "sh", "-c", script, "sh", taken.machine_id)
    took = time.monotonic() - started
    assert twin.returncode == 1, (twin.returncode, twin.stdout, twin.stderr)
    assert (
        f"fleetd: error: machine ID {taken.machine_id} is already registered by another live fleetd"
    ) in twin.stderr
    assert "fleetd: hint: every machine needs its own /etc/machine-id" in twin.stderr
    assert took < 120
    # the real core-02 keeps its place, its IP and its fleetd
    assert sorted(fleet.machines()) == sorted(fleet.nodes)
    assert fleet.systemctl(taken.name, "is-active", "fleet.service") == "active"
    assert fleet.systemctl(twin_on.name, "is-active", "fleet.service") == "active"

"""fleet on the session's real 3-node lab: fleetd driving the guests' real systemd.

Scenarios: the unit lifecycle with fleet's messages, Conflicts spreading,
Replaces, a duplicate machine ID, Global units (also on a machine that joins
later), a clean fleet stop (the machine leaves at once), and a hard kill (units,
MachineOf pairs and metadata-bound units move after agent_ttl, never to a
machine without the metadata).

Every test leaves the lab as it found it: its units destroyed and unloaded,
every node it stopped or killed running again and back in etcd and fleet.
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

from tests.vm.conftest import AGENT_TTL, FLEET_METADATA, SEED_METADATA, Lab

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
FLEET_PREFIX = "/_coreos.com/fleet/"  # fleet's etcd keys (provisioner/guest/fleet/README.md)
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
            unit, machine, active, sub = line.split()
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
            unit, target = line.split()
            found[unit] = target if target in ("-", "global") else self.node_of(target)
        return found

    def machines(self) -> list[str]:
        """Nodes `list-machines` shows, checking each row's IP and metadata."""
        listing = self.ctl_ok("list-machines", "--no-legend", "--full").stdout
        names = []
        for line in listing.splitlines():
            machine, ip, metadata = line.split()
            name = self.node_of(machine)
            assert (ip, metadata) == (self.nodes[name].ip, FLEET_METADATA[name]), line
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
        if self.killed and self.lab.restore_session():
            # the session's snapshot has every node up, no unit and fleetd running: the
            # test's nodes come back in seconds, not a boot (test_lab's seed demo and the
            # fault tests still bring a killed node back with `lab start`)
            self.units.clear()
            self.fleet_stopped.clear()
            self.killed.clear()
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


def messages(stderr: str) -> str:
    """fleetctl's stderr without the notes its wait loops print when a poll fails (and go on)."""
    return "".join(
        line
        for line in stderr.splitlines(keepends=True)
        if not line.startswith("Error retrieving units from Registry: ")
    )


def lowest(nodes: dict[str, Node], names: tuple[str, ...] | None = None) -> Node:
    """The node fleet's scheduler picks among equally loaded ones (lowest machine ID)."""
    pool = [nodes[name] for name in names] if names else list(nodes.values())
    return min(pool, key=lambda node: node.machine_id)


def test_unit_lifecycle_on_real_systemd(fleet: Fleet) -> None:
    hello = fleet.unit_file("hello.service", HELLO)
    host = lowest(fleet.nodes)  # every machine is empty: the tie goes to the lowest ID

    submitted = fleet.ctl_ok("submit", hello)
    assert (submitted.stdout, submitted.stderr) == ("", "")
    assert fleet.ctl_ok("list-unit-files", "--no-legend").stdout == (
        f"hello.service\t{HELLO_HASH}\tinactive\tinactive\t-\n"
    )
    assert fleet.ctl_ok("list-units", "--no-legend").stdout == ""

    loaded = fleet.ctl_ok("load", "hello.service")
    assert loaded.stdout == f"Unit hello.service loaded on {host.legend}\n"
    assert fleet.systemctl(host.name, "is-enabled", "hello.service") == "linked-runtime"
    assert fleet.systemctl(host.name, "is-active", "hello.service") == "inactive"
    assert fleet.ctl_ok("list-units", "--no-legend", "--fields=unit,load,active,sub").stdout == (
        "hello.service\tloaded\tinactive\tdead\n"
    )

    started = fleet.ctl_ok("start", "hello")
    assert started.stdout == f"Unit hello.service launched on {host.legend}\n"
    assert fleet.systemctl(host.name, "is-active", "hello.service") == "active"
    assert [line.split() for line in fleet.ctl_ok("list-units").stdout.splitlines()] == [
        ["UNIT", "MACHINE", "ACTIVE", "SUB"],
        ["hello.service", host.legend, "active", "running"],
    ]
    assert fleet.ctl_ok("list-unit-files", "--no-legend").stdout == (
        f"hello.service\t{HELLO_HASH}\tlaunched\tlaunched\t{host.legend}\n"
    )
    assert fleet.ctl_ok("cat", "hello.service").stdout == HELLO
    others = [name for name in fleet.nodes if name != host.name]
    assert all(fleet.systemctl(name, "is-active", "hello.service") != "active" for name in others)
    # `status` on the unit's own machine runs the real `systemctl status` there.
    status = fleet.exec(host.name, "fleetctl", "status", "hello.service")
    assert status.returncode == 0, status.stderr
    assert "Active: active (running)" in status.stdout
    journal = fleet.exec(host.name, "sudo", "journalctl", "-u", "hello.service", "--no-pager")
    assert "Hello, world" in journal.stdout

    stopped = fleet.ctl_ok("stop", "hello.service")
    assert stopped.stdout == f"Unit hello.service loaded on {host.legend}\n"
    assert messages(stopped.stderr) == "Successfully stopped units [hello.service].\n"
    assert fleet.systemctl(host.name, "is-active", "hello.service") == "inactive"
    assert fleet.ctl_ok("list-units", "--no-legend", "--fields=unit,load,active,sub").stdout == (
        "hello.service\tloaded\tinactive\tdead\n"
    )

    unloaded = fleet.ctl_ok("unload", "hello.service")
    assert unloaded.stdout == "Unit hello.service inactive\n"
    assert messages(unloaded.stderr) == "Successfully unloaded units [hello.service].\n"
    assert fleet.systemctl(host.name, "show", "--property=LoadState", "hello.service") == (
        "LoadState=not-found"
    )
    assert fleet.fleet_files()[host.name] == []
    assert fleet.ctl_ok("list-units", "--no-legend").stdout == ""
    assert fleet.ctl_ok("list-unit-files", "--no-legend").stdout == (
        f"hello.service\t{HELLO_HASH}\tinactive\tinactive\t-\n"
    )

    refused = fleet.ctl("stop", "hello.service")
    assert (refused.returncode, refused.stderr) == (
        1,
        "Unable to stop unit hello.service in state inactive\n",
    )

    # start again from the registry, then destroy it while it runs
    again = fleet.ctl_ok("start", "hello.service")
    assert again.stdout == f"Unit hello.service launched on {host.legend}\n"
    assert fleet.systemctl(host.name, "is-active", "hello.service") == "active"
    destroyed = fleet.ctl_ok("destroy", "hello.service")
    assert destroyed.stdout == "Destroyed hello.service\n"
    fleet.wait(
        "the destroyed hello.service to be stopped and unloaded by systemd",
        lambda: (
            fleet.systemctl(host.name, "show", "--property=LoadState", "hello.service")
            == "LoadState=not-found"
        ),
        60,
    )
    fleet.wait(
        "list-units to forget hello.service",
        lambda: fleet.ctl_ok("list-units", "--no-legend").stdout == "",
        60,
    )
    gone = fleet.ctl("destroy", "hello.service")
    assert (gone.returncode, gone.stderr) == (0, "Units not found in registry\n")
    missing = fleet.ctl("start", "nothere")
    assert (missing.returncode, missing.stderr) == (
        1,
        "Error creating units: unable to find Unit(nothere.service) in Registry or on filesystem\n",
    )


def test_five_conflicting_units_run_once_per_machine(fleet: Fleet) -> None:
    names = [f"conflict.{i}.service" for i in range(5)]
    paths = [fleet.unit_file(name, service(name, "Conflicts=conflict.*.service")) for name in names]
    triggered = fleet.ctl_ok("start", "--no-block", *paths)
    assert triggered.stdout == "".join(f"Triggered unit {name} start\n" for name in names)

    def spread() -> dict[str, list[str]] | None:
        active = fleet.active()
        return active if len(active) == 3 else None

    active = fleet.wait("3 of the 5 conflicting units active", spread, 120)
    assert sorted(node for nodes in active.values() for node in nodes) == sorted(fleet.nodes)
    time.sleep(2 * 2.0)  # further engine passes must not place the other two anywhere
    targets = fleet.targets()
    assert sorted(targets) == names
    placed = {unit: node for unit, node in targets.items() if node != "-"}
    assert sorted(placed.values()) == sorted(fleet.nodes)
    assert {unit: [node] for unit, node in placed.items()} == fleet.active()
    # the real systemd on each machine runs exactly the one fleet put there
    systemd = fleet.systemd_active("conflict.*")
    assert systemd == {node: {unit} for unit, node in placed.items()}
    states = fleet.ctl_ok("list-unit-files", "--no-legend", "--fields=unit,dstate,state,target")
    rows = [line.split() for line in states.stdout.splitlines()]
    assert all(row[1] == "launched" for row in rows)
    assert sorted(row[0] for row in rows if row[2:] == ["inactive", "-"]) == sorted(
        set(names) - set(placed)
    )


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
    # and its own units directory. It stays up saying why (no restart loop); `timeout`
    # stops it after 20 s, which is what exit status 124 says.
    script = (
        'dir=$(mktemp -d) && printf "%s\\n" "$1" > "$dir/machine-id" && '
        'FLEET_MACHINE_ID_FILE="$dir/machine-id" FLEET_UNITS_DIRECTORY="$dir/units" '
        "FLEET_AGENT_TTL=5s FLEET_DISABLE_ENGINE=true timeout 20 /usr/bin/fleetd; "
        'status=$?; rm -rf "$dir"; exit $status'
    )
    twin = fleet.exec(twin_on.name, "sh", "-c", script, "sh", taken.machine_id)
    assert twin.returncode == 124, (twin.returncode, twin.stdout, twin.stderr)
    assert (
        f"machine ID {taken.machine_id} is already registered by another live fleetd"
    ) in twin.stderr
    assert "every machine needs its own /etc/machine-id" in twin.stderr
    # the real core-02 keeps its place, its IP and its fleetd
    assert sorted(fleet.machines()) == sorted(fleet.nodes)
    assert fleet.systemctl(taken.name, "is-active", "fleet.service") == "active"
    assert fleet.systemctl(twin_on.name, "is-active", "fleet.service") == "active"


def test_global_units_and_a_clean_fleet_stop(fleet: Fleet) -> None:
    everywhere = fleet.unit_file("everywhere.service", service("everywhere", "Global=true"))
    web_only = fleet.unit_file(
        "webonly.service", service("web only", "Global=yes\nMachineMetadata=compute=web")
    )
    started = fleet.ctl_ok("start", everywhere, web_only)
    assert started.stdout == (
        "Triggered global unit everywhere.service start\n"
        "Triggered global unit webonly.service start\n"
    )
    want = {"everywhere.service": sorted(fleet.nodes), "webonly.service": list(WEB_NODES)}
    fleet.wait("the global units on every machine they fit", lambda: fleet.active() == want, 120)
    assert fleet.systemd_active("*only.service") == {
        "core-01": {"webonly.service"}, "core-02": {"webonly.service"}, DB_NODE: set()
    }  # fmt: skip
    files = fleet.ctl_ok("list-unit-files", "--no-legend", "--fields=unit,dstate,state,target")
    assert [line.split() for line in files.stdout.splitlines()] == [
        ["everywhere.service", "launched", "-", "global"],
        ["webonly.service", "launched", "-", "global"],
    ]

    # A unit that may run on core-02 or core-03 (never on core-01, where `lab fleetctl` runs).
    mover = fleet.unit_file(
        "mover.service", service("mover", "MachineMetadata=rack=rack2\nMachineMetadata=rack=rack3")
    )
    fleet.ctl_ok("start", mover)
    host = fleet.targets()["mover.service"]
    other = "core-03" if host == "core-02" else "core-02"
    assert host in ("core-02", "core-03")

    # Stop fleet.service on the host and, on the host itself (its own etcd member,
    # its own clock), look at fleet's keys at once and then until the unit moves.
    script = (
        "sudo systemctl stop fleet.service && stopped=$(date +%s.%N) && "
        'ETCDCTL_API=3 etcdctl get --prefix --keys-only "$1" && echo -- && '
        "timeout 60 sh -c 'until [ \"$(ETCDCTL_API=3 etcdctl get --print-value-only "
        '"$0")" = "$1" ]; do sleep 0.2; done\' "$2" "$3" && '
        'awk -v a="$stopped" -v b="$(date +%s.%N)" "BEGIN { print b - a }"'
    )
    target_key = f"{FLEET_PREFIX}job/mover.service/target"
    machines_key = f"{FLEET_PREFIX}machines/"
    fleet.fleet_stopped.append(host)
    stop = fleet.exec(
        host, "sh", "-c", script, "sh", machines_key, target_key, fleet.nodes[other].machine_id
    )
    assert stop.returncode == 0, (stop.stdout, stop.stderr)
    present, _, moved_after = stop.stdout.partition("--\n")
    # The machine left at once (its presence was revoked, not left to expire) ... (dynamic
    # metadata, machines/<id>/metadata/<key>, has no lease and stays, as in fleet)
    assert sorted(key for key in present.split() if key.endswith("/object")) == sorted(
        f"{machines_key}{node.machine_id}/object"
        for node in fleet.nodes.values()
        if node.name != host
    )
    assert host not in fleet.machines()
    # ... and its unit was rescheduled sooner than an expiring presence could have
    # allowed (the last keep-alive was at most agent_ttl/2 before the stop).
    print(f"clean stop: mover.service rescheduled {float(moved_after):.1f}s after fleetd stopped")
    assert float(moved_after) < AGENT_TTL / 2
    fleet.wait(
        f"mover.service to run on {other}",
        lambda: fleet.active().get("mover.service") == [other],
        60,
    )
    assert fleet.active()["everywhere.service"] == sorted(set(fleet.nodes) - {host})
    # fleetd unloaded everything from the stopped machine's systemd before exiting
    assert fleet.fleet_files()[host] == []
    for unit in ("everywhere.service", "mover.service", "webonly.service"):
        assert fleet.systemctl(host, "is-active", unit) != "active", unit

    # The machine joins again and gets the global units it fits, nothing else.
    fleet.start_fleet(host)
    again = {"everywhere.service": sorted(fleet.nodes), "webonly.service": list(WEB_NODES)}
    fleet.wait(
        f"the global units on {host} after it joined again",
        lambda: {k: v for k, v in fleet.active().items() if k != "mover.service"} == again,
        120,
    )
    assert fleet.systemctl(host, "is-active", "everywhere.service") == "active"
    assert fleet.active()["mover.service"] == [other]  # no churn back to the joiner

    stopped = fleet.ctl_ok("stop", "everywhere")
    assert stopped.stdout == "Triggered global unit everywhere.service stop\n"
    fleet.wait(
        "everywhere.service stopped on every machine",
        lambda: "everywhere.service" not in fleet.active(),
        120,
    )
    assert fleet.systemd_active("everywhere.service") == {name: set() for name in fleet.nodes}


def test_a_killed_machine_loses_its_units_after_agent_ttl(fleet: Fleet) -> None:
    web = fleet.unit_file("web.service", service("web", "MachineMetadata=compute=web"))
    sidecar = fleet.unit_file("web-sidecar.service", service("sidecar", "MachineOf=web.service"))
    fleet.ctl_ok("start", web, sidecar)
    targets = fleet.targets()
    host = targets["web.service"]
    assert host in WEB_NODES
    assert targets["web-sidecar.service"] == host
    assert fleet.systemd_active("web*") == {
        name: ({"web.service", "web-sidecar.service"} if name == host else set())
        for name in fleet.nodes
    }
    survivor = next(name for name in WEB_NODES if name != host)

    # On the surviving web machine, with its clock and its etcd member's (serializable)
    # view: how long the dead machine's presence lasts, then until web.service moves.
    script = (
        "start=$(date +%s.%N) && "
        "timeout 120 sh -c 'until out=$(ETCDCTL_API=3 etcdctl get --consistency=s "
        '--keys-only "$0") && [ -z "$out" ]; do sleep 0.2; done\' "$1" && '
        "gone=$(date +%s.%N) && "
        "timeout 120 sh -c 'until [ \"$(ETCDCTL_API=3 etcdctl get --consistency=s "
        '--print-value-only "$0")" = "$1" ]; do sleep 0.2; done\' "$2" "$3" && '
        'awk -v a="$start" -v b="$gone" -v c="$(date +%s.%N)" "BEGIN { print b - a, c - b }"'
    )
    killed_at = time.monotonic()
    fleet.kill(host)
    launched_after = time.monotonic() - killed_at
    watched = fleet.exec(
        survivor,
        "sh", "-c", script, "sh",
        f"{FLEET_PREFIX}machines/{fleet.nodes[host].machine_id}/object",
        f"{FLEET_PREFIX}job/web.service/target",
        fleet.nodes[survivor].machine_id,
    )  # fmt: skip
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    expired_after, rescheduled_in = (float(x) for x in watched.stdout.split())
    print(
        f"hard kill: {host}'s presence lasted more than {launched_after + expired_after:.1f}s, "
        f"web.service rescheduled {rescheduled_in:.1f}s after it expired (agent_ttl {AGENT_TTL}s)"
    )
    # The presence outlived the machine (a lease expiring, not a departure); the last
    # keep-alive before the kill was at most agent_ttl/2 earlier.
    assert launched_after + expired_after >= AGENT_TTL / 3
    assert rescheduled_in < AGENT_TTL
    assert host not in fleet.machines()
    fleet.wait(
        f"web.service and its sidecar to run on {survivor}",
        lambda: fleet.active() == {"web.service": [survivor], "web-sidecar.service": [survivor]},
        120,
    )
    # never on the db machine: its systemd has no trace of either unit
    journal = fleet.exec(
        DB_NODE, "journalctl", "--no-pager", "-q", "-u", "web.service", "-u", "web-sidecar.service"
    )
    assert (journal.returncode, journal.stdout.strip()) == (0, "")
    assert fleet.targets() == {"web.service": survivor, "web-sidecar.service": survivor}
    assert fleet.systemd_active("web*") == {
        name: ({"web.service", "web-sidecar.service"} if name == survivor else set())
        for name in fleet.nodes
        if name != host
    } | {host: set()}

    # The dead machine comes back; the units stay where they are.
    fleet.revive(host)
    assert sorted(fleet.machines()) == sorted(fleet.nodes)
    assert fleet.active() == {"web.service": [survivor], "web-sidecar.service": [survivor]}

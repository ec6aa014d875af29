"""A whole lab saved and brought back, on the session's real lab: every node's disk and
memory reverted together, so what happened after the snapshot (a key written, a node
killed) is gone, clocks agree with the host again, and the lab passes `lab verify`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.vm.conftest import SESSION_SNAPSHOT as SESSION
from tests.vm.conftest import Lab

pytestmark = pytest.mark.vm

NODES = ["core-01", "core-02", "core-03"]


def _guest_clock_skew(lab: Lab, node: str) -> float:
    guest = float(lab.run("exec", node, "--", "date", "+%s.%N").stdout.strip())
    return abs(guest - time.time())


def test_a_restored_snapshot_is_the_lab_as_it_was(lab: Lab, tmp_path: Path) -> None:
    before = {node["name"]: node for node in lab.status()["nodes"]}
    lab.run("snapshot", "save", "vm-clean", timeout=900)
    try:
        listed = json.loads(lab.run("snapshot", "list", "--json").stdout)
        assert [(s["name"], s["nodes"], s["missing"]) for s in listed if s["name"] != SESSION] == [
            ("vm-clean", NODES, [])
        ]
        # after the snapshot: a key written, a unit started, a node dead
        lab.run("etcdctl", "put", "/lab-vm-test/after-snapshot", "yes")
        unit = tmp_path / "after-snapshot.service"
        unit.write_text("[Service]\nExecStart=/bin/sleep 100000\n")
        lab.run("fleetctl", "start", str(unit), timeout=300)
        lab.run("kill", "core-03")

        restored = lab.run("snapshot", "restore", "vm-clean", timeout=900)
        assert "restored from snapshot vm-clean" in restored.stdout

        for node in lab.status()["nodes"]:
            name = node["name"]
            assert node["state"] == "running", name
            assert node["etcd_healthy"] is True, name
            assert node["fleet_listed"] is True, name
            assert node["failed_units"] == [], name
            assert node["machine_id"] == before[name]["machine_id"], name
            assert node["flannel_subnet"] == before[name]["flannel_subnet"], name
            # the guests' clocks stood still while saved; the restore set them again
            assert _guest_clock_skew(lab, name) < 10, name
        got = lab.run("etcdctl", "get", "/lab-vm-test/after-snapshot").stdout
        assert "after-snapshot" not in got, f"a key written after the snapshot survived: {got}"
        units = lab.run("fleetctl", "list-unit-files", "--no-legend").stdout
        assert "after-snapshot.service" not in units, units
        for name in NODES:
            on_node = lab.run("systemctl", name, "is-active", "after-snapshot.service",
                              check=False).stdout.strip()  # fmt: skip
            assert on_node != "active", f"after-snapshot.service runs on {name}"
        assert sum(node["etcd_leader"] for node in lab.status()["nodes"]) == 1
        machines = lab.run("fleetctl", "list-machines", "--no-legend").stdout.splitlines()
        assert len(machines) == 3, machines

        # `lab up --snapshot NAME` restores when the lab has NAME (the CI fast path)
        fast = lab.run("up", "--snapshot", "vm-clean", timeout=900)
        assert "restored from snapshot vm-clean" in fast.stdout
        lab.run("verify", timeout=900)
    finally:
        lab.run("snapshot", "rm", "vm-clean", check=False)
    left = [s["name"] for s in json.loads(lab.run("snapshot", "list", "--json").stdout)]
    assert left in ([], [SESSION]), left

"""The v3 gateway client and fleet's key layout against a real etcd 3.4."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from provisioner.guest.fleet.errors import EtcdError
from provisioner.guest.fleet.etcd import EtcdClient, WatchEvent, cmp_create_revision, op_put
from provisioner.guest.fleet.model import MachineState
from provisioner.guest.fleet.registry import Registry
from provisioner.guest.fleet.unitfile import parse_unit_file
from tests.etcd_support import ETCD, ETCDCTL, EtcdMember
from tests.loopback import free_ports, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ETCD.exists(), reason="needs etcd 3.4"),
    pytest.mark.timeout(120),
]


def test_kv_txn_and_prefix_ranges(etcd: EtcdMember) -> None:
    client = EtcdClient([etcd.client_url])
    client.put("/p/a", "1")
    client.put("/p/b/c", "2")
    client.put("/q", "3")
    assert [(kv.key, kv.value) for kv in client.range("/p/", prefix=True)] == [
        ("/p/a", "1"),
        ("/p/b/c", "2"),
    ]
    first = client.txn([cmp_create_revision("/new", 0)], [op_put("/new", "x")])
    second = client.txn([cmp_create_revision("/new", 0)], [op_put("/new", "y")])
    assert (first.succeeded, second.succeeded) == (True, False)
    assert client.get("/new") is not None
    assert client.delete("/p/", prefix=True) == 2
    assert client.get("/p/a") is None


def test_lease_expiry_removes_attached_keys(etcd: EtcdMember) -> None:
    client = EtcdClient([etcd.client_url])
    lease, ttl = client.lease_grant(2)
    assert ttl == 2
    client.put("/leased", "v", lease=lease)
    assert client.lease_keepalive(lease) == 2
    wait_for(lambda: client.get("/leased") is None, 10, "the leased key to expire")
    assert client.lease_keepalive(lease) == 0
    client.lease_revoke(lease)  # already gone: not an error


def test_watch_delivers_events_and_cancel_unblocks(etcd: EtcdMember) -> None:
    client = EtcdClient([etcd.client_url])
    watch = client.watch("/w/")
    events: list[WatchEvent] = []

    def consume() -> None:
        for event in watch.events():
            events.append(event)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.5)
    client.put("/w/one", "1")
    client.put("/elsewhere", "x")
    client.delete("/w/one")
    wait_for(lambda: len(events) >= 2, 10, "two watch events")
    assert [(e.kind, e.key) for e in events] == [("PUT", "/w/one"), ("DELETE", "/w/one")]
    watch.cancel()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_unreachable_endpoints_fail_over_then_error(etcd: EtcdMember) -> None:
    (dead,) = free_ports(1)
    client = EtcdClient([f"http://127.0.0.1:{dead}", etcd.client_url], timeout=2)
    client.put("/ok", "1")
    assert client.get("/ok") is not None
    nowhere = EtcdClient([f"http://127.0.0.1:{dead}"], timeout=1)
    with pytest.raises(EtcdError, match="failed on every endpoint"):
        nowhere.get("/ok")


@pytest.mark.skipif(not ETCDCTL.exists(), reason="needs etcdctl")
def test_layout_is_readable_with_etcdctl(etcd: EtcdMember) -> None:
    registry = Registry(EtcdClient([etcd.client_url]))
    unit = parse_unit_file("[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n")
    assert registry.create_unit("x.service", unit, "launched")
    assert not registry.create_unit("x.service", unit)
    machine = MachineState("f" * 32, "10.0.0.9", (("role", "db"),), "1.0.0")
    lease, _ = registry.etcd.lease_grant(30)
    assert registry.register_machine(machine, lease)
    assert not registry.register_machine(machine, lease)
    assert registry.schedule_unit("x.service", machine.id)
    assert not registry.schedule_unit("x.service", machine.id)

    listed = subprocess.run(
        [str(ETCDCTL), f"--endpoints={etcd.client_url}", "get", "--prefix", "/_coreos.com/fleet/"],
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = listed.stdout.splitlines()
    pairs = dict(zip(lines[::2], lines[1::2], strict=True))
    prefix = "/_coreos.com/fleet/"
    assert json.loads(pairs[prefix + "job/x.service/object"]) == {
        "Name": "x.service",
        "UnitHash": list(bytes.fromhex(unit.hash)),
    }
    assert pairs[prefix + "job/x.service/target-state"] == "launched"
    assert pairs[prefix + "job/x.service/target"] == machine.id
    assert json.loads(pairs[prefix + f"unit/{unit.hash}"]) == {"Raw": unit.text}
    assert json.loads(pairs[prefix + f"machines/{machine.id}/object"]) == {
        "ID": machine.id,
        "PublicIP": "10.0.0.9",
        "Metadata": {"role": "db"},
        "Capabilities": {},
        "Version": "1.0.0",
    }
    views = registry.unit_views(registry.snapshot())
    assert [(v.name, v.desired_state, v.current_state, v.machine_id) for v in views] == [
        ("x.service", "launched", "inactive", machine.id)
    ]
    assert registry.destroy_unit("x.service")
    assert registry.snapshot().jobs == {}

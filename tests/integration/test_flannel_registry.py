"""Subnet leases on a real etcd: concurrent acquisition, reuse, expiry."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from provisioner.guest.flannel.config import parse_config
from provisioner.guest.flannel.errors import LeaseError
from provisioner.guest.flannel.registry import HeldLease, SubnetRegistry
from provisioner.guest.fleet.etcd import EtcdClient
from tests.etcd_support import EtcdMember
from tests.flannel_support import ROOT, wait_for

pytestmark = pytest.mark.integration

# 14 subnets of /28 between 10.252.0.16 and 10.252.0.224
CONFIG_TEXT = json.dumps({"Network": "10.252.0.0/24", "SubnetLen": 28, "SubnetMax": "10.252.0.224"})


def registry(etcd: EtcdMember) -> SubnetRegistry:
    return SubnetRegistry(EtcdClient([etcd.client_url], timeout=10), "/coreos.com/network")


def test_many_nodes_at_once_never_share_a_subnet_and_the_next_finds_none(
    etcd: EtcdMember,
) -> None:
    config = parse_config(CONFIG_TEXT)
    held: dict[str, HeldLease] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(14)

    def node(index: int) -> None:
        public_ip = f"192.0.2.{index + 1}"
        start.wait()
        try:
            held[public_ip] = registry(etcd).acquire(config, public_ip, {}, previous=None, ttl=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    subnets = {lease.subnet for lease in held.values()}
    assert len(subnets) == 14
    snap = registry(etcd).snapshot()
    assert {lease.public_ip: lease.subnet for lease in snap.leases} == {
        ip: lease.subnet for ip, lease in held.items()
    }
    with pytest.raises(LeaseError, match="out of subnets"):
        registry(etcd).acquire(config, "192.0.2.99", {}, previous=None, ttl=60)


def test_a_node_gets_its_own_lease_back_and_a_dead_nodes_lease_expires(
    etcd: EtcdMember,
) -> None:
    config = parse_config(CONFIG_TEXT)
    reg = registry(etcd)
    first = reg.acquire(config, "192.0.2.1", {}, previous=None, ttl=5)
    again = reg.acquire(config, "192.0.2.1", {"x": 1}, previous=None, ttl=5)
    assert again.subnet == first.subnet
    assert again.key == first.key
    # the previous subnet (from the subnet file) is taken back when free (one the first
    # node, whose subnet is random, did not take)
    wanted = next(
        net
        for net in (ipaddress.IPv4Network(n) for n in ("10.252.0.112/28", "10.252.0.128/28"))
        if net != first.subnet
    )
    other = reg.acquire(config, "192.0.2.2", {}, previous=wanted, ttl=5)
    assert other.subnet == wanted
    assert reg.renew(other)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(reg.snapshot().leases) == 2:
        assert reg.renew(other)
        time.sleep(1)
    assert [lease.public_ip for lease in reg.snapshot().leases] == ["192.0.2.2"]
    assert not reg.renew(first)
    assert not reg.renew(again)


def test_flanneld_waits_for_the_config_and_stops_at_once_on_sigterm(
    etcd: EtcdMember, tmp_path: Path
) -> None:
    log = tmp_path / "flanneld.log"
    argv = [
        "/usr/bin/python3",
        "-c",
        "import sys; from provisioner.guest.flannel.flanneld import main; sys.exit(main())",
        f"-etcd-endpoints={etcd.client_url}",
        f"-subnet-file={tmp_path / 'subnet.env'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for("flanneld to wait for its config", lambda: "waiting for it" in log.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "/coreos.com/network/config not found" in log.read_text()
    assert not (tmp_path / "subnet.env").exists()

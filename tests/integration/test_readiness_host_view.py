"""lab up's view from the host, against a real etcd and a real fleetd on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import NodeError
from provisioner.readiness import HostView, member_health_from_host
from tests.etcd_support import EtcdMember, Etcds
from tests.fleet_support import FleetCluster
from tests.loopback import free_ports, wait_for

pytestmark = pytest.mark.integration


def nobody() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def test_etcd_health_as_the_host_sees_it(etcd: EtcdMember) -> None:
    assert member_health_from_host(etcd.client_url) is True
    assert member_health_from_host(nobody(), timeout=1.0) is None

    assert HostView({"default": etcd.client_url}).etcd_ready() == "1/1 members healthy"
    view = HostView({"default": etcd.client_url, "core-02": nobody()}, timeout=1.0)
    assert view.etcd_ready() is None  # it cannot see every member: the SSH check decides
    assert view.reachable


def test_an_unhealthy_member_holds_the_checks_back(tmp_path: Path) -> None:
    # two members, then one dies: the other has no quorum and answers 503 {"health":"false"}
    etcds = Etcds(tmp_path)
    a, b = EtcdMember(tmp_path / "a", "a"), EtcdMember(tmp_path / "b", "b")
    cluster = f"--initial-cluster=a={a.peer_url},b={b.peer_url}"
    etcds.members += [a, b]
    try:
        a.start(cluster)
        b.start(cluster)
        wait_for(lambda: (a.healthy() and b.healthy()) or None, 60, "a two-member etcd")
        view = HostView({"a": a.client_url, "b": b.client_url}, timeout=3.0)
        assert view.etcd_ready() == "2/2 members healthy"
        b.stop()
        wait_for(
            lambda: member_health_from_host(a.client_url, timeout=3.0) is False or None,
            60,
            "the member left alone to report unhealthy",
        )
        with pytest.raises(NodeError, match=r"not healthy yet \(seen from the host\): a$"):
            view.etcd_ready()
        assert view.reachable
    finally:
        etcds.stop_all()


def test_view_stands_aside_when_the_host_reaches_no_member() -> None:
    view = HostView({"core-01": nobody()}, timeout=1.0)
    assert view.etcd_ready() is None
    assert not view.reachable
    view.fleet_not_registered({"core-01": "0" * 32})  # no longer probes: the SSH checks decide


def test_fleet_registration_as_the_host_sees_it(etcd: EtcdMember, cluster: FleetCluster) -> None:
    view = HostView({"core-01": etcd.client_url}, timeout=3.0)
    one = cluster.start_machine("one")  # waits until fleetd registered its machine
    with pytest.raises(NodeError, match=r"not registered yet \(seen from the host\): two"):
        view.fleet_not_registered({"one": one.machine_id, "two": "f" * 32})
    two = cluster.start_machine("two")
    view.fleet_not_registered({"one": one.machine_id, "two": two.machine_id})
    assert view.reachable

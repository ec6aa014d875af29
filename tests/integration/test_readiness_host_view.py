"""lab up's view from the host, against a real etcd and a real fleetd on loopback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from provisioner.errors import NotReady
from provisioner.etcdhttp import member_health
from provisioner.guest.fleet.etcd import EtcdClient
from provisioner.readiness import (
    HOST_BLIND_EVERY,
    HOST_PROBE_TIMEOUT,
    READY_KEY,
    HostView,
    etcd_round_trip,
)
from provisioner.remote.local import LocalRunner
from provisioner.remote.runner import CommandResult, Runner
from tests.etcd_support import EtcdMember, Etcds
from tests.fleet_support import FleetCluster
from tests.loopback import free_ports, wait_for

pytestmark = pytest.mark.integration


def nobody() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def test_etcd_health_as_the_host_sees_it(etcd: EtcdMember) -> None:
    assert member_health(etcd.client_url, timeout=HOST_PROBE_TIMEOUT) is True
    assert member_health(nobody(), timeout=1.0) is None

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
            lambda: member_health(a.client_url, timeout=3.0) is False or None,
            60,
            "the member left alone to report unhealthy",
        )
        with pytest.raises(NotReady, match=r"not healthy yet \(seen from the host\): a$"):
            view.etcd_ready()
        assert view.reachable
    finally:
        etcds.stop_all()


def test_a_silent_member_gets_etcdctl_only_now_and_then() -> None:
    # nothing listens yet: etcd has not started, or listens where the host cannot reach
    view = HostView({"core-01": nobody()}, timeout=1.0)
    assert view.etcd_ready() is None
    calls: list[int] = []

    def not_healthy_over_ssh() -> str | None:
        calls.append(1)
        raise NotReady("core-01: etcd not healthy yet: no answer")

    for poll in range(1, 2 * HOST_BLIND_EVERY + 1):
        if poll % HOST_BLIND_EVERY:
            with pytest.raises(NotReady, match="not every member answers the host yet"):
                view.etcd_ready_or(not_healthy_over_ssh)
        else:
            with pytest.raises(NotReady, match="etcd not healthy yet: no answer"):
                view.etcd_ready_or(not_healthy_over_ssh)
    assert len(calls) == 2
    assert view.reachable  # not started yet: the host keeps watching


def test_view_stands_aside_when_etcdctl_sees_what_the_host_cannot() -> None:
    view = HostView({"core-01": nobody()}, timeout=1.0)
    for _ in range(HOST_BLIND_EVERY - 1):
        with pytest.raises(NotReady):
            view.etcd_ready_or(lambda: "1/1 members healthy")
    assert view.etcd_ready_or(lambda: "1/1 members healthy") == "1/1 members healthy"
    assert not view.reachable
    # from now on etcdctl decides at once, and fleet's registry is no longer read
    assert view.etcd_ready_or(lambda: "1/1 members healthy") == "1/1 members healthy"
    view.fleet_not_registered({"core-01": "0" * 32})


def test_the_host_answer_needs_no_etcdctl(etcd: EtcdMember) -> None:
    def unused() -> str | None:
        raise AssertionError("etcdctl ran although the host sees every member")

    assert HostView({"default": etcd.client_url}).etcd_ready_or(unused) == "1/1 members healthy"


def test_fleet_registration_as_the_host_sees_it(etcd: EtcdMember, cluster: FleetCluster) -> None:
    view = HostView({"core-01": etcd.client_url}, timeout=3.0)
    one = cluster.start_machine("one")  # waits until fleetd registered its machine
    with pytest.raises(NotReady, match=r"not registered yet \(seen from the host\): two"):
        view.fleet_not_registered({"one": one.machine_id, "two": "f" * 32})
    two = cluster.start_machine("two")
    view.fleet_not_registered({"one": one.machine_id, "two": two.machine_id})
    assert view.reachable


class MustNotRun:
    """A node whose commands must not run: the host has done its part."""

    @property
    def name(self) -> str:
        return "core-01"

    def run(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None
    ) -> CommandResult:
        raise AssertionError(f"ran {list(argv)} on {self.name}")

    def upload(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        raise AssertionError(f"uploaded {local} to {self.name}")

    def close(self) -> None:
        return None


def test_round_trip_with_etcdctl_on_every_node(etcd: EtcdMember) -> None:
    runners: dict[str, Runner] = {
        "core-01": LocalRunner(name="core-01"),
        "core-02": LocalRunner(name="core-02"),
    }
    local = [etcd.client_url]  # core-02, a worker, reads through its own endpoint
    summary = etcd_round_trip({"core-01": etcd.client_url}, runners, None, local)
    assert summary == f"{READY_KEY} written on core-01, read on 2 nodes"
    first = EtcdClient([etcd.client_url]).get(READY_KEY)
    assert first is not None
    assert len(first.value.split()[0]) == 32
    etcd_round_trip({"core-01": etcd.client_url}, runners, None, local)
    again = EtcdClient([etcd.client_url]).get(READY_KEY)
    assert again is not None
    assert again.value != first.value  # each run writes its own value, over the same key


def test_round_trip_from_the_host_leaves_only_workers_to_etcdctl(etcd: EtcdMember) -> None:
    members = {"core-01": etcd.client_url}
    runners: dict[str, Runner] = {"core-01": MustNotRun(), "worker-01": LocalRunner(name="w")}
    # the worker's own endpoint is its gateway on a guest; here the member itself
    summary = etcd_round_trip(members, runners, HostView(members), [etcd.client_url])
    assert summary == (
        f"{READY_KEY} written on core-01, read on 2 nodes (1 through their etcd from the host)"
    )
    assert HostView({"core-01": nobody()}).write_and_read(READY_KEY, "x") is None

"""Fault drills on the session's real lab, as etcd's functional tester starts them: a member
cut off the lab network from the host (the guest cannot undo it) and healed, and the
leader killed. After each, every member answers and every acknowledged write is there.
Each test leaves the lab whole again."""

from __future__ import annotations

import pytest

from tests.vm.conftest import Lab

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]


def member_value(lab: Lab, node: str, key: str) -> str:
    got = lab.run("exec", node, "--", "env", "ETCDCTL_API=3", "etcdctl",
                  "--endpoints=http://127.0.0.1:2379", "get", "--print-value-only", key,
                  check=False, timeout=120)  # fmt: skip
    return got.stdout.strip() if got.returncode == 0 else ""


def test_a_partitioned_member_catches_up_after_heal(lab: Lab) -> None:
    # a follower (etcd's BLACKHOLE_PEER_PORT_TX_RX_ONE_FOLLOWER): the two others keep
    # their leader and a quorum, so writes go on
    follower = next(n["name"] for n in lab.status()["nodes"] if not n["etcd_leader"])
    others = [n for n in ("core-01", "core-02", "core-03") if n != follower]
    cut = lab.run("partition", follower)
    assert f"{follower}: cut off the lab network" in cut.stdout, cut.stdout
    try:
        for n in range(3):
            # one retry window per write: an emulated guest can stall a commit for seconds
            lab.wait_for(f"/faults/partition/{n} written",
                         lambda n=n: lab.run("etcdctl", "put", f"/faults/partition/{n}", f"v{n}",
                                             check=False, timeout=120).returncode == 0,
                         60)  # fmt: skip
        unreachable = lab.run("exec", follower, "--", "true", check=False, timeout=300)
        assert unreachable.returncode != 0, "the host still reaches a partitioned node"
        refused = lab.run("partition", *others, check=False)
        assert refused.returncode != 0
        assert "quorum" in (refused.stderr + refused.stdout).lower(), refused.stderr
    finally:
        lab.run("heal", timeout=300)
    for n in range(3):
        lab.wait_for(f"/faults/partition/{n} on {follower} after the heal",
                     lambda n=n: member_value(lab, follower, f"/faults/partition/{n}") == f"v{n}",
                     300)  # fmt: skip
    lab.wait_for("every member healthy",
                 lambda: all(n["etcd_healthy"] for n in lab.status()["nodes"]), 300)  # fmt: skip


def test_a_killed_leader_is_replaced_and_nothing_is_lost(lab: Lab) -> None:
    lab.run("etcdctl", "put", "/faults/before-leader-kill", "kept", timeout=300)
    leaders = [n["name"] for n in lab.status()["nodes"] if n["etcd_leader"]]
    assert len(leaders) == 1, leaders
    killed = lab.run("kill", "--leader", timeout=300)
    assert killed.stdout.strip() == f"{leaders[0]}: powered off", killed.stdout
    try:
        others = [n for n in ("core-01", "core-02", "core-03") if n != leaders[0]]

        def new_leader() -> list[str]:
            status = {n["name"]: n for n in lab.status()["nodes"]}
            return [n for n in others if status[n]["etcd_leader"]]

        assert len(lab.wait_for("a new etcd leader", new_leader, 300)) == 1
        for node in others:
            assert member_value(lab, node, "/faults/before-leader-kill") == "kept", node
    finally:
        lab.run("start", leaders[0], timeout=900)  # back in etcd and fleet when it returns
    assert member_value(lab, leaders[0], "/faults/before-leader-kill") == "kept"

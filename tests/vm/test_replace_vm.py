"""``lab replace`` of a follower member of the session's real lab (etcd's
SIGQUIT_AND_REMOVE_ONE_FOLLOWER): its disk and identity thrown away, ``etcdctl member
remove`` / ``member add``, a fresh node of the same name joined with
initial-cluster-state existing. A key written before is read after on every member,
the member list keeps its names with a new id for the replaced one, the new node has
a new machine-id, fleet lists 3 machines and ``lab verify`` passes. The session's
snapshot is taken again afterwards: the one before names a domain that is gone."""

from __future__ import annotations

import json

import pytest

from tests.vm.conftest import SESSION_SNAPSHOT, Lab

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

MEMBERS = ("core-01", "core-02", "core-03")


def member_value(lab: Lab, node: str, key: str) -> str:
    got = lab.run("exec", node, "--", "env", "ETCDCTL_API=3", "etcdctl",
                  "--endpoints=http://127.0.0.1:2379", "get", "--print-value-only", key,
                  check=False, timeout=120)  # fmt: skip
    return got.stdout.strip() if got.returncode == 0 else ""


def member_ids(lab: Lab) -> dict[str, int]:
    listed = lab.run("etcdctl", "member", "list", "-w", "json", timeout=300)
    return {m.get("name", ""): int(m["ID"]) for m in json.loads(listed.stdout)["members"]}


def machine_id(lab: Lab, node: str) -> str:
    return lab.run("exec", node, "--", "cat", "/etc/machine-id", timeout=120).stdout.strip()


def test_a_replaced_follower_rejoins_with_a_new_identity_and_nothing_lost(lab: Lab) -> None:
    follower = next(n["name"] for n in lab.status()["nodes"] if not n["etcd_leader"])
    assert follower in MEMBERS
    lab.run("etcdctl", "put", "/replace/before", "kept", timeout=300)
    ids_before = member_ids(lab)
    machine_before = machine_id(lab, follower)

    done = lab.run("replace", follower, timeout=2400)
    assert f"{follower}: replaced" in done.stdout, done.stdout

    for node in MEMBERS:  # the replaced member's own copy too
        lab.wait_for(f"/replace/before on {node}",
                     lambda node=node: member_value(lab, node, "/replace/before") == "kept",
                     300)  # fmt: skip
    ids_after = member_ids(lab)
    assert sorted(ids_after) == sorted(ids_before) == sorted(MEMBERS)
    assert ids_after[follower] != ids_before[follower]
    assert {n: i for n, i in ids_after.items() if n != follower} == {
        n: i for n, i in ids_before.items() if n != follower
    }
    assert machine_id(lab, follower) != machine_before

    def machines() -> list[str]:
        listed = lab.run("fleetctl", "list-machines", "--no-legend", "--full", timeout=300)
        return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]

    # the old machine leaves fleet's list after its agent TTL
    found = lab.wait_for("fleet to list 3 machines", lambda: len(machines()) == 3, 300)
    assert found
    assert machine_id(lab, follower) in machines()
    lab.run("verify", timeout=900)

    if lab.has_snapshot(SESSION_SNAPSHOT):  # later tests restore the lab as it is now
        lab.run("snapshot", "rm", SESSION_SNAPSHOT, timeout=600)
        lab.run("snapshot", "save", SESSION_SNAPSHOT, timeout=600)

"""The checks' decisions over parsed output: healthy data passes, each fault is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from provisioner.checks.expectations import NodeExpectation
from provisioner.checks.verdicts import (
    docker_problems,
    etcd_health_problems,
    etcd_leader_problems,
    etcd_member_problems,
    failed_unit_problems,
    fleet_machine_problems,
    inactive_unit_problems,
    local_member_problems,
    system_state_problems,
    this_machine_problems,
)
from provisioner.parsers import (
    SystemState,
    parse_endpoint_health,
    parse_endpoint_status,
    parse_list_machines,
    parse_member_list,
    parse_systemctl_failed,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parsers"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def fleet_nodes() -> list[NodeExpectation]:
    """The three machines of the fleetctl fixtures, as a lab would expect them."""
    return [
        NodeExpectation("core-01", "172.17.8.101", "core", {"name": "core-01", "role": "member"}),
        NodeExpectation("core-02", "172.17.8.102", "core", {"name": "core-02", "role": "member"}),
        NodeExpectation("core-03", "172.17.8.103", "worker", {}),
    ]


# --- etcd ---------------------------------------------------------------------


def test_health_passes_on_a_healthy_cluster() -> None:
    assert etcd_health_problems(parse_endpoint_health(fixture("etcd-endpoint-health-3.json"))) == []


def test_health_names_the_unreachable_endpoint() -> None:
    health = parse_endpoint_health(fixture("etcd-endpoint-health-unreachable.json"))
    bad = next(h for h in health if not h.healthy)
    assert etcd_health_problems(health) == [
        f"{bad.endpoint} is unhealthy: context deadline exceeded"
    ]


def test_health_with_no_endpoint_fails() -> None:
    assert etcd_health_problems([]) == ["etcdctl checked no endpoint"]


def test_member_count_passes_when_it_matches() -> None:
    assert etcd_member_problems(parse_member_list(fixture("etcd-member-list-3.json")), 3) == []


def test_member_count_mismatch_is_reported() -> None:
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    (problem,) = etcd_member_problems(members, 5)
    assert problem.startswith("expected 5 started etcd members, found 3:")
    assert "(core-01)" in problem


def test_unstarted_member_is_reported() -> None:
    members = parse_member_list(fixture("etcd-member-list-unstarted.json"))
    problems = etcd_member_problems(members, 3)
    unstarted = next(m for m in members if not m.started)
    assert problems == [
        f"member {unstarted.hex_id} (unstarted) has not started"
        f" (peer URLs {unstarted.peer_urls[0]})"
    ]


def test_learner_does_not_count_as_a_voting_member() -> None:
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    learner = replace(members[0], is_learner=True)
    problems = etcd_member_problems((learner, *members[1:]), 3)
    assert problems[0].startswith("expected 3 started etcd members, found 2")
    assert problems[1] == f"member {learner.hex_id} ({learner.name}) is a learner"


def test_local_member_is_listed_and_reachable() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-1.json"))
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    node = NodeExpectation("core-01", "127.0.0.1", "core")
    assert local_member_problems(node, statuses, members) == []


def test_local_member_without_a_url_on_its_ip() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-1.json"))
    members = parse_member_list(fixture("etcd-member-list-3.json"))
    node = NodeExpectation("core-01", "192.168.50.101", "core")
    (problem,) = local_member_problems(node, statuses, members)
    assert "advertises no client URL on 192.168.50.101" in problem


def test_local_member_missing_from_the_list() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-1.json"))
    members = [
        m
        for m in parse_member_list(fixture("etcd-member-list-3.json"))
        if m.member_id != statuses[0].member_id
    ]
    node = NodeExpectation("core-01", "127.0.0.1", "core")
    (problem,) = local_member_problems(node, statuses, members)
    assert "which the member list lacks" in problem


def test_leader_passes_on_a_consistent_cluster() -> None:
    statuses = parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json"))
    assert etcd_leader_problems(statuses, 3) == []


def test_leader_disagreement_and_terms_are_reported() -> None:
    statuses = list(parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json")))
    statuses[0] = replace(statuses[0], leader_id=statuses[0].member_id, raft_term=9)
    problems = etcd_leader_problems(statuses, 3)
    assert any(p.startswith("members disagree on the leader") for p in problems)
    assert any(p.startswith("members are at different raft terms") for p in problems)


def test_no_leader_and_wrong_size_are_reported() -> None:
    statuses = [
        replace(s, leader_id=0)
        for s in parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json"))
    ]
    assert etcd_leader_problems(statuses, 5) == [
        "3 etcd members answered, expected 5",
        "no member knows a leader",
    ]


def test_leader_outside_the_answering_members() -> None:
    statuses = [
        replace(s, leader_id=0xABC)
        for s in parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json"))
    ]
    assert etcd_leader_problems(statuses, 3) == [
        "the leader abc is not among the members that answered"
    ]


def test_split_clusters_are_reported() -> None:
    statuses = list(parse_endpoint_status(fixture("etcd-endpoint-status-cluster.json")))
    statuses[-1] = replace(statuses[-1], cluster_id=1)
    assert any(
        p.startswith("endpoints belong to different clusters")
        for p in etcd_leader_problems(statuses, 3)
    )


# --- fleet --------------------------------------------------------------------


def test_fleet_passes_when_every_node_is_listed() -> None:
    machines = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    assert fleet_machine_problems(machines, fleet_nodes()) == []


def test_fleet_reports_missing_extra_and_wrong_metadata() -> None:
    machines = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    nodes = fleet_nodes()
    nodes[1] = replace(nodes[1], metadata={"role": "db"})
    nodes.append(NodeExpectation("core-04", "172.17.8.104", "worker"))
    del nodes[2]
    assert fleet_machine_problems(machines, nodes) == [
        "core-02 (172.17.8.102) has metadata name=core-02,role=member, expected role=db",
        "core-04 (172.17.8.104) is not listed",
        f"machine {machines[2].machine_id} at 172.17.8.103 is not a node of this lab",
    ]


def test_fleet_reports_short_and_duplicate_ids() -> None:
    short = parse_list_machines(fixture("fleetctl-list-machines.txt"))
    problems = fleet_machine_problems(short, fleet_nodes())
    assert len([p for p in problems if "is abbreviated" in p]) == 3
    full = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    cloned = (full[0], replace(full[1], machine_id=full[0].machine_id), full[2])
    assert fleet_machine_problems(cloned, fleet_nodes()) == [
        f"machine ID {full[0].machine_id} is listed 2 times"
    ]


def test_this_machine_is_listed_at_its_ip() -> None:
    machines = parse_list_machines(fixture("fleetctl-list-machines-full.txt"))
    node = fleet_nodes()[1]
    assert this_machine_problems(node, machines[1].machine_id, machines) == []
    assert this_machine_problems(node, machines[0].machine_id, machines) == [
        f"core-02: fleet lists this machine ({machines[0].machine_id}) at 172.17.8.101,"
        " expected 172.17.8.102"
    ]
    assert this_machine_problems(node, "0" * 32, machines) == [
        f"core-02: fleet does not list this machine ({'0' * 32})"
    ]
    assert this_machine_problems(node, "", machines) == [
        "core-02: /etc/machine-id holds '', not 32 hex digits"
    ]


# --- systemd ------------------------------------------------------------------


def test_failed_units_are_listed() -> None:
    failed = parse_systemctl_failed(fixture("systemctl-failed.txt"))
    assert failed_unit_problems(failed)[0] == (
        "docker.service failed (loaded/failed/failed): Docker Application Container Engine"
    )
    assert failed_unit_problems(parse_systemctl_failed(fixture("systemctl-failed-none.txt"))) == []


def test_inactive_units() -> None:
    states = {"etcd2.service": "active", "fleet.service": "failed", "docker.service": ""}
    assert inactive_unit_problems(states) == [
        "fleet.service is failed, not active",
        "docker.service is unknown to systemd, not active",
    ]


def test_docker_problems() -> None:
    assert docker_problems(True, "inactive") == []  # started on first use, not yet used
    assert docker_problems(True, "active") == []
    assert docker_problems(True, "activating") == []  # a first use is starting it
    assert docker_problems(False, "inactive") == [
        "docker's socket /run/docker.sock is missing: docker.socket is not listening"
    ]
    assert docker_problems(True, "failed") == [
        "docker.service is failed, not active, activating or inactive"
    ]
    assert docker_problems(True, "") == [
        "docker.service is unknown to systemd, not active, activating or inactive"
    ]


def test_system_state() -> None:
    failed = parse_systemctl_failed(fixture("systemctl-failed.txt"))
    assert system_state_problems(SystemState.RUNNING, ()) == []
    assert system_state_problems(SystemState.DEGRADED, failed) == [
        "systemd reports the system degraded, not running; failed units:"
        " docker.service, etcd2.service, flanneld.service"
    ]
    assert system_state_problems(SystemState.STARTING, ()) == [
        "systemd reports the system starting, not running"
    ]

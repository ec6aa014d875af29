"""Decisions over parsed tool output: each returns the problems found, one line each.

An empty list means the check passes. The check modules only fetch output,
parse it (:mod:`provisioner.parsers`) and assert that these lists are empty.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlsplit

from provisioner.checks.expectations import NodeExpectation
from provisioner.parsers import (
    EndpointHealth,
    EndpointStatus,
    EtcdMember,
    FailedUnit,
    FlannelLease,
    FleetMachine,
    SystemState,
)

_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")


def _member_label(member: EtcdMember) -> str:
    return f"{member.hex_id} ({member.name or 'unstarted'})"


# --- etcd ---------------------------------------------------------------------


def etcd_health_problems(health: Sequence[EndpointHealth]) -> list[str]:
    """Every endpoint etcdctl checked must have committed its proposal."""
    if not health:
        return ["etcdctl checked no endpoint"]
    return [
        f"{entry.endpoint} is unhealthy: {entry.error or 'no reason given'}"
        for entry in health
        if not entry.healthy
    ]


def etcd_member_problems(members: Sequence[EtcdMember], expected: int) -> list[str]:
    """Exactly ``expected`` started voting members, and nothing else in the list."""
    problems = []
    voting = [m for m in members if m.started and not m.is_learner]
    if len(voting) != expected:
        names = ", ".join(_member_label(m) for m in voting) or "none"
        problems.append(f"expected {expected} started etcd members, found {len(voting)}: {names}")
    problems += [
        f"member {_member_label(m)} has not started (peer URLs {', '.join(m.peer_urls)})"
        for m in members
        if not m.started
    ]
    problems += [f"member {_member_label(m)} is a learner" for m in members if m.is_learner]
    return problems


def local_member_problems(
    node: NodeExpectation, statuses: Sequence[EndpointStatus], members: Sequence[EtcdMember]
) -> list[str]:
    """A member node's own endpoint is a listed member advertising a URL on the node's IP."""
    if not statuses:
        return [f"no etcd endpoint of {node.name} answered"]
    by_id = {member.member_id: member for member in members}
    problems = []
    for status in statuses:
        member = by_id.get(status.member_id)
        if member is None:
            problems.append(
                f"{status.endpoint} is member {status.member_id:x}, which the member list lacks"
            )
            continue
        hosts = {urlsplit(url).hostname for url in member.client_urls}
        if node.ip not in hosts:
            urls = ", ".join(member.client_urls) or "none"
            problems.append(
                f"member {_member_label(member)} advertises no client URL on {node.ip}"
                f" (it advertises {urls}), so other nodes cannot reach it"
            )
    return problems


def etcd_leader_problems(statuses: Sequence[EndpointStatus], expected_members: int) -> list[str]:
    """All members answer, belong to one cluster and agree on one leader and term."""
    if not statuses:
        return ["no etcd member answered `endpoint status`"]
    problems = [f"{s.endpoint} reports errors: {'; '.join(s.errors)}" for s in statuses if s.errors]
    answering = {s.member_id for s in statuses}
    if len(answering) != expected_members:
        problems.append(f"{len(answering)} etcd members answered, expected {expected_members}")
    clusters = {s.cluster_id for s in statuses}
    if len(clusters) > 1:
        problems.append(
            "endpoints belong to different clusters: "
            + ", ".join(f"{s.endpoint}={s.cluster_id:x}" for s in statuses)
        )
    leaders = {s.leader_id for s in statuses}
    if leaders == {0}:
        problems.append("no member knows a leader")
    elif len(leaders) > 1:
        problems.append(
            "members disagree on the leader: "
            + ", ".join(f"{s.endpoint} says {s.leader_id:x}" for s in statuses)
        )
    elif not leaders <= answering:
        problems.append(
            f"the leader {next(iter(leaders)):x} is not among the members that answered"
        )
    terms = {s.raft_term for s in statuses}
    if len(terms) > 1:
        problems.append(
            "members are at different raft terms: "
            + ", ".join(f"{s.endpoint}={s.raft_term}" for s in statuses)
        )
    return problems


# --- fleet --------------------------------------------------------------------


def fleet_machine_problems(
    machines: Sequence[FleetMachine], nodes: Sequence[NodeExpectation]
) -> list[str]:
    """fleet lists each node once, by its IP, with distinct full IDs and its metadata."""
    problems = [
        f"machine ID {m.machine_id!r} is abbreviated; list machines with --full"
        for m in machines
        if m.abbreviated
    ]
    ids = Counter(m.machine_id for m in machines)
    problems += [f"machine ID {mid} is listed {n} times" for mid, n in ids.items() if n > 1]
    ips = Counter(m.ip for m in machines)
    problems += [f"IP {ip} is listed {n} times" for ip, n in ips.items() if ip and n > 1]
    problems += [f"machine {m.machine_id} has no IP" for m in machines if m.ip is None]
    by_ip = {m.ip: m for m in machines if m.ip}
    expected_ips = {node.ip for node in nodes}
    for node in nodes:
        machine = by_ip.get(node.ip)
        if machine is None:
            problems.append(f"{node.name} ({node.ip}) is not listed")
        elif machine.metadata != node.metadata:
            problems.append(
                f"{node.name} ({node.ip}) has metadata {_metadata(machine.metadata)},"
                f" expected {_metadata(node.metadata)}"
            )
    problems += [
        f"machine {m.machine_id} at {m.ip} is not a node of this lab"
        for m in machines
        if m.ip and m.ip not in expected_ips
    ]
    return problems


def _metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "-"


def this_machine_problems(
    node: NodeExpectation, machine_id: str, machines: Sequence[FleetMachine]
) -> list[str]:
    """The node's /etc/machine-id is a valid ID that fleet lists at the node's IP."""
    if not _MACHINE_ID.match(machine_id):
        return [f"{node.name}: /etc/machine-id holds {machine_id!r}, not 32 hex digits"]
    listed = [m for m in machines if m.machine_id == machine_id]
    if not listed:
        return [f"{node.name}: fleet does not list this machine ({machine_id})"]
    return [
        f"{node.name}: fleet lists this machine ({machine_id}) at {m.ip or 'no IP'},"
        f" expected {node.ip}"
        for m in listed
        if m.ip != node.ip
    ]


# --- systemd ------------------------------------------------------------------


def failed_unit_problems(units: Sequence[FailedUnit]) -> list[str]:
    return [
        f"{u.unit} failed ({u.load}/{u.active}/{u.sub}): {u.description}".rstrip(": ")
        for u in units
    ]


def inactive_unit_problems(states: dict[str, str]) -> list[str]:
    """``states`` maps each expected unit to what ``systemctl is-active`` printed."""
    return [
        f"{unit} is {state or 'unknown to systemd'}, not active"
        for unit, state in states.items()
        if state != "active"
    ]


def docker_problems(socket_listening: bool, service_state: str) -> list[str]:
    """docker is ready for first use: its socket is there (docker.socket starts
    docker.service on the first connection), and a docker.service that was
    started is running or stopped, not failed or stuck."""
    problems = []
    if not socket_listening:
        problems.append(
            "docker's socket /run/docker.sock is missing: docker.socket is not listening"
        )
    if service_state not in ("active", "activating", "inactive"):
        problems.append(
            f"docker.service is {service_state or 'unknown to systemd'},"
            " not active, activating or inactive"
        )
    return problems


def system_state_problems(state: SystemState, failed: Sequence[FailedUnit]) -> list[str]:
    if state is SystemState.RUNNING:
        return []
    detail = f"; failed units: {', '.join(u.unit for u in failed)}" if failed else ""
    return [f"systemd reports the system {state.value}, not running{detail}"]


# --- flannel ------------------------------------------------------------------


def flannel_lease_problems(
    leases: Sequence[FlannelLease], nodes: Sequence[NodeExpectation], network: str, backend: str
) -> list[str]:
    """Every node holds exactly one lease, inside ``network``, of ``backend``; no two
    leases share a subnet (flanneld's transaction must never hand one out twice)."""
    overlay = ipaddress.IPv4Network(network)
    problems = []
    held = Counter(lease.public_ip for lease in leases)
    for node in nodes:
        if held[node.ip] != 1:
            problems.append(f"{node.name} ({node.ip}) holds {held[node.ip]} leases, expected 1")
    subnets = Counter(lease.subnet for lease in leases)
    problems += [f"subnet {net} is leased {n} times" for net, n in subnets.items() if n > 1]
    for lease in leases:
        if not ipaddress.IPv4Network(lease.subnet).subnet_of(overlay):
            problems.append(f"lease {lease.subnet} of {lease.public_ip} is outside {network}")
        if lease.backend != backend:
            problems.append(f"lease {lease.subnet} is for {lease.backend}, expected {backend}")
    return problems


def subnet_env_problems(env: dict[str, str], network: str, lease: FlannelLease | None) -> list[str]:
    """subnet.env names the lab's network and the first address of this node's lease."""
    if lease is None:
        return ["this node holds no lease"]
    problems = []
    if env.get("FLANNEL_NETWORK") != network:
        problems.append(f"FLANNEL_NETWORK is {env.get('FLANNEL_NETWORK')!r}, expected {network}")
    expected = ipaddress.IPv4Network(lease.subnet)
    wanted = f"{expected.network_address + 1}/{expected.prefixlen}"
    if env.get("FLANNEL_SUBNET") != wanted:
        problems.append(f"FLANNEL_SUBNET is {env.get('FLANNEL_SUBNET')!r}, expected {wanted}")
    if not env.get("FLANNEL_MTU", "").isdigit():
        problems.append(f"FLANNEL_MTU is {env.get('FLANNEL_MTU')!r}, expected a number")
    return problems


def overlay_address(lease: FlannelLease) -> str:
    """The address flanneld gives its device (flannel.1, flannel0): the lease's network."""
    return str(ipaddress.IPv4Network(lease.subnet).network_address)


def host_gw_route_problems(routes: dict[str, str], peers: Sequence[FlannelLease]) -> list[str]:
    """host-gw: a route to each peer's subnet via the peer's own address."""
    return [
        f"no route to {peer.subnet} via {peer.public_ip} (found {routes[peer.subnet]!r})"
        for peer in peers
        if f"via {peer.public_ip} " not in routes[peer.subnet] + " "
    ]

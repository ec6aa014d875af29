"""Waits that decide when a node, and then the cluster, is ready.

Every wait has a deadline and, when it gives up, says what it was waiting for
and what it saw last.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from provisioner import facts
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import LabError, NodeError, NotReady, RemoteError, WaitTimeout
from provisioner.etcdhttp import EtcdHttp, member_health
from provisioner.parsers import FlannelLease
from provisioner.remote.runner import Runner

POLL = 2.0
HOST_POLL = 1.0  # the host's own probes of the guests' etcd cost the guests next to nothing
HOST_PROBE_TIMEOUT = 3.0
BANNER_READ_TIMEOUT = 5.0  # a guest busy under emulation may connect at once and answer later
HOST_ROUND_TRIP_TIMEOUT = 10.0  # a commit under emulation can stall; etcdctl gets as long


def ssh_banner(
    host: str, port: int = 22, timeout: float = 5.0, read_timeout: float | None = None
) -> str | None:
    """The SSH server's identification line, or None if nothing answers yet.

    ``timeout`` bounds the connection and, unless ``read_timeout`` is given, the
    wait for the banner after it (a guest busy under emulation may connect at
    once and answer seconds later).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout if read_timeout is None else read_timeout)
            data = sock.recv(256)
    except OSError:
        return None
    line = data.decode("ascii", "replace").strip()
    return line if line.startswith("SSH-") else None


@dataclass(frozen=True)
class NodeFacts:
    machine_id: str
    system_state: str
    failed_units: tuple[str, ...]


def system_facts(node: str, runner: Runner, timeout: float) -> NodeFacts:
    """machine-id and `systemctl is-system-running --wait` (bounded by ``timeout``)."""
    machine_id = facts.MACHINE_ID.run(runner)
    booted = facts.system_state(wait=timeout)
    result = runner.run(booted.argv, timeout=booted.timeout)
    try:
        state = booted.read(node, result).value
    except RemoteError:
        state = ""  # `timeout` stopped systemctl before systemd answered
    failed: tuple[str, ...] = ()
    if state != "running":
        failed = tuple(unit.unit for unit in facts.FAILED_UNITS.run(runner))
    if state not in ("running", "degraded"):
        raise WaitTimeout(
            node,
            f"systemd did not finish starting within {timeout:g}s (state: {state or 'unknown'})",
        )
    return NodeFacts(machine_id=machine_id, system_state=state, failed_units=failed)


def member_endpoints(config: LabConfig) -> list[str]:
    return [f"http://{member.ip}:2379" for member in config.members]


def member_urls(config: LabConfig) -> dict[str, str]:
    """Every etcd member's name and client URL, in the lab's order."""
    names = [member.name for member in config.members]
    return dict(zip(names, member_endpoints(config), strict=True))


# --- the host's view first --------------------------------------------------------
#
# Under emulation every etcdctl or fleetctl started in a guest costs it seconds of
# CPU it needs for booting. While the host, over the lab network, can see that
# etcd is not healthy yet or that fleet has not registered every machine, the
# checks over SSH are not worth running; once it sees them ready, they decide.
# While some member does not answer the host at all, etcd has not started there
# yet, or it listens where the host cannot reach (loopback only, say): etcdctl on
# a node tells the two apart, but only now and then, since until etcd starts it
# would cost a booting guest seconds for nothing.
HOST_BLIND_EVERY = 10  # host polls between two etcdctl checks while a member is silent


class HostView:
    """The host's probes of etcd and fleet (``members``: name -> client URL); once
    etcdctl on a node finds etcd healthy while the host still cannot see every
    member, it stands aside for good and the SSH checks decide."""

    def __init__(self, members: Mapping[str, str], timeout: float = HOST_PROBE_TIMEOUT) -> None:
        self.members = dict(members)
        self.timeout = timeout
        self.etcd = EtcdHttp(list(self.members.values()), timeout=timeout)
        self.reachable = True
        self._silent_polls = 0

    def etcd_ready_or(self, over_ssh: Callable[[], str | None]) -> str | None:
        """The etcd check: the host's answer when it sees every member; while some
        member is silent, ``over_ssh`` (etcdctl on a node) on every
        :data:`HOST_BLIND_EVERY`-th such poll, NotReady on the others."""
        seen = self.etcd_ready()
        if seen is not None:
            return seen
        if self.reachable:
            self._silent_polls += 1
            if self._silent_polls % HOST_BLIND_EVERY:
                raise NotReady("etcd: not every member answers the host yet")
        answer = over_ssh()
        if answer is not None:
            self.reachable = False  # healthy, though the host cannot see it all
        return answer

    @classmethod
    def for_lab(cls, config: LabConfig) -> HostView:
        return cls(member_urls(config))

    def etcd_ready(self) -> str | None:
        """The etcd check, from the host: a summary once every member answers healthy
        on ``/health`` and the member list has them all started; NodeError while
        not; None when the host cannot see every member."""
        if not self.reachable:
            return None
        seen = {name: member_health(url, self.timeout) for name, url in self.members.items()}
        sick = [name for name, healthy in seen.items() if healthy is False]
        if sick:
            raise NotReady(f"etcd: not healthy yet (seen from the host): {', '.join(sick)}")
        if None in seen.values():
            return None
        try:
            started = self.etcd.started_members()
        except RemoteError:
            return None
        expected = len(self.members)
        if len(started) != expected:
            raise NotReady(
                f"etcd: {len(started)} of {expected} members have started (seen from the host)"
            )
        return f"{expected}/{expected} members healthy"

    def write_and_read(self, key: str, value: str) -> list[str] | None:
        """Put ``key`` through the first member's client URL, then read it back
        through every member's, each read linearizable and served by that member;
        the members read, NodeError naming one that answered wrongly, or None when
        the host could not write (the round trip over SSH decides)."""
        if not self.reachable:
            return None
        names = list(self.members)
        try:
            self._client(names[0]).put(key, value)
        except RemoteError:
            return None

        def read(name: str) -> None:
            try:
                got = self._client(name).get(key)
            except RemoteError as exc:
                raise NodeError(
                    name, f"could not read {key} (from the host): {exc.message}"
                ) from None
            if got != value:
                raise NodeError(name, f"read {got!r} for {key} (from the host), expected {value!r}")

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(read, names))
        return names

    def _client(self, name: str) -> EtcdHttp:
        return EtcdHttp([self.members[name]], timeout=HOST_ROUND_TRIP_TIMEOUT)

    def fleet_not_registered(self, machine_ids: Mapping[str, str]) -> None:
        """NodeError while fleet's registry, read from the host, lacks a node's machine."""
        if not self.reachable:
            return
        try:
            missing = [n for n, m in machine_ids.items() if not self.etcd.fleet_machine_present(m)]
        except RemoteError:
            self.reachable = False
            return
        if missing:
            raise NotReady(f"fleet: not registered yet (seen from the host): {', '.join(missing)}")

    def flannel_leases(self) -> tuple[FlannelLease, ...] | None:
        """flanneld's leases read from the host; None when the host cannot read etcd."""
        if not self.reachable:
            return None
        try:
            return self.etcd.flannel_leases()
        except RemoteError:
            return None


def flannel_ready(config: LabConfig, runner: Runner, host: HostView | None = None) -> str:
    """A summary once every node holds a lease of the overlay (read from the host when
    it can, else with etcdctl on ``runner``); NodeError naming the nodes without one."""
    leases = host.flannel_leases() if host is not None else None
    if leases is None:
        leases = facts.flannel_leases(member_endpoints(config)).run(runner)
    held = {lease.public_ip for lease in leases}
    missing = [node.name for node in config.nodes if node.ip not in held]
    if missing:
        raise NotReady(f"flannel: no subnet lease yet: {', '.join(missing)}")
    overlay = config.flannel
    return f"{overlay.backend} {overlay.network}, {len(config.nodes)} subnets leased"


def etcd_healthy(config: LabConfig, runner: Runner) -> str | None:
    """None until every member reports healthy and the member list is complete."""
    results = facts.endpoint_health(member_endpoints(config)).run(runner)
    sick = [h.endpoint for h in results if not h.healthy]
    if sick or len(results) != len(config.members):
        raise NotReady(f"{runner.name}: etcd not healthy yet: {', '.join(sick) or 'no answer'}")
    members = facts.member_list().run(runner)
    started = [m for m in members if m.name]
    if len(started) != len(config.members):
        raise NotReady(
            f"{runner.name}: {len(started)} of {len(config.members)} etcd members have started"
        )
    return f"{len(started)}/{len(config.members)} members healthy"


READY_KEY = "/lab/ready"  # lab up's round trip; each run overwrites it, nothing piles up


def etcd_round_trip(
    members: Mapping[str, str],
    runners: Mapping[str, Runner],
    host: HostView | None = None,
    worker_endpoints: Sequence[str] = (),
) -> str:
    """Write a fresh value to :data:`READY_KEY` on the first of ``members`` (name ->
    client URL), then read it back on every node of ``runners`` at once.

    A node that is not a member (a worker) reads through ``worker_endpoints``, by
    default none given: etcdctl's own default, the worker's gateway at 127.0.0.1.

    With a ``host`` view that reaches the members, the host writes through the
    first member and reads through each member's own client URL, and only nodes
    that are not members (workers) read with etcdctl, through their own etcd
    gateway at 127.0.0.1; otherwise etcdctl on the nodes does it all. The reads
    are linearizable (etcdctl's default too), so each one goes through the leader:
    a node that answers with this run's value sees the committed write. The key
    stays (one small key, overwritten by the next run) rather than costing the
    guests another request to delete it.
    """
    endpoints = list(members.values())
    key = READY_KEY
    value = f"{uuid.uuid4().hex} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    writer = next(iter(members))
    read_by_host = host.write_and_read(key, value) if host is not None else None
    if read_by_host is None:
        facts.etcd_put(endpoints, key, value).run(runners[writer])
        read_by_host = []
    over_ssh = {name: runner for name, runner in runners.items() if name not in read_by_host}

    def read(item: tuple[str, Runner]) -> None:
        name, runner = item
        # a worker reads through its own gateway at 127.0.0.1, as its services do
        got = facts.etcd_value(endpoints if name in members else worker_endpoints, key).run(runner)
        if got != value:
            raise NodeError(name, f"read {got!r} for {key}, expected {value!r}")

    with ThreadPoolExecutor(max_workers=max(1, len(over_ssh))) as pool:
        list(pool.map(read, over_ssh.items()))
    readers = len(read_by_host) + len(over_ssh)
    how = f" ({len(read_by_host)} through their etcd from the host)" if read_by_host else ""
    return f"{key} written on {writer}, read on {readers} nodes{how}"


def fleet_machines(config: LabConfig, runner: Runner, machine_ids: Mapping[str, str]) -> str | None:
    """None until fleet lists every node's machine-id, all distinct, with its metadata."""
    listed = {m.machine_id: m for m in facts.FLEET_MACHINES.run(runner)}
    problems = []
    for node in config.nodes:
        machine = listed.get(machine_ids[node.name])
        if machine is None:
            problems.append(f"{node.name} not listed")
        elif machine.metadata != dict(node.metadata):
            problems.append(f"{node.name} has metadata {machine.metadata}")
    if len(set(machine_ids.values())) != len(machine_ids):
        raise NodeError(runner.name, f"machine-ids are not distinct: {dict(machine_ids)}")
    if problems:
        raise NotReady(f"{runner.name}: fleet: " + "; ".join(problems))
    return f"{len(listed)} machines"


def first_member_runner(config: LabConfig, runners: Mapping[str, Runner]) -> Runner:
    for member in config.members:
        if member.name in runners:
            return runners[member.name]
    raise LabError("no etcd member is reachable")


def names(nodes: Sequence[NodeSpec]) -> str:
    return ", ".join(node.name for node in nodes)

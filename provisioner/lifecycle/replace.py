"""``lab replace NODE``: a node's disk and identity thrown away and a fresh node of the
same name joined, as etcd's runtime-reconfiguration guide replaces a failed member.

For an etcd member, in two halves (the drill's ``member-replaced`` injects the first
and recovers with the second, as etcd's functional tester does in
``SIGQUIT_AND_REMOVE_ONE_FOLLOWER``: tests/functional/tester/case_sigquit_remove.go):

- thrown away: refused unless NODE is one of the lab's nodes and the other members
  that answer healthy keep a quorum of the cluster with NODE removed and then added
  again; ``etcdctl member remove`` (the id found by name) through a healthy other
  member; the domain powered off and undefined with its disk, its config drive and
  console volumes removed, its pins, machine-id and known_hosts lines forgotten;
- joined: ``etcdctl member add NODE --peer-urls=http://IP:2380``; its user-data
  rendered again with a static ``initial-cluster`` (the members now and itself) and
  ``initial-cluster-state: existing`` (never the discovery token again); a fresh
  config drive; ``vagrant up`` of that node from the box (a new disk, so a new
  machine-id and new SSH host keys, pinned from its console like a first boot); every
  node given every host key again; then etcd lists NODE started and healthy, fleet
  lists its new machine-id and (with flannel) it holds a subnet lease.

A worker is thrown away and joined the same way without the etcd steps: its etcd
gateway and proxy follow the core as before. Fleet drops the old machine after its
agent TTL and reschedules its units; nothing is drained.

The steps done are recorded in the lab's state (``replacing``), so ``lab replace NODE``
again after a failure goes on where it stopped (a member removed is not removed again,
one added is not added twice) and ``lab destroy`` removes what is left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from provisioner import facts, readiness
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import ConfigError, LabError, NotReady, RemoteError
from provisioner.lab import render, with_joined
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.lifecycle.cluster import CLUSTER_TIMEOUT, TRANSIENT
from provisioner.lifecycle.scale import boot_nodes, discard
from provisioner.locks import file_lock
from provisioner.parsers import EtcdMember
from provisioner.progress import Progress
from provisioner.remote.runner import Runner
from provisioner.state import REPLACING, StateFile
from provisioner.waits import wait_for

# the steps of a replacement, in order, as recorded in the lab's state
MEMBER_REMOVED = "member removed"
THROWN_AWAY = "thrown away"
MEMBER_ADDED = "member added"
ADD_TIMEOUT = 60.0  # etcd's strict reconfiguration check waits 5 s of connected peers
# etcdctl's errors for a membership change etcd refuses for now: retried until the timeout
RETRIED = ("etcdserver: unhealthy cluster", "context deadline exceeded", "request timed out")


@dataclass(frozen=True)
class Replaced:
    """What ``lab replace`` did to ``node``: the etcd member ids (hex) before and after
    (None for a worker) and its machine-ids."""

    node: str
    member: bool
    old_member_id: str | None
    new_member_id: str | None
    old_machine_id: str | None
    new_machine_id: str | None
    detail: str


# --- decisions (pure) ----------------------------------------------------------------------


def peer_url(node: NodeSpec) -> str:
    return f"http://{node.ip}:2380"


def check_replaceable(config: LabConfig, name: str) -> NodeSpec:
    """The node named ``name``; ConfigError naming it and listing the lab's nodes."""
    known = [node.name for node in config.nodes]
    if name not in known:
        raise ConfigError(
            f"no node named {name!r} in lab {config.name}",
            key="NODE",
            hint=f"this lab has: {', '.join(known)}",
        )
    return config.node(name)


def check_quorum(config: LabConfig, name: str, healthy: Collection[str]) -> None:
    """LabError naming ``name`` unless the members other than it that answer healthy
    (``healthy``) are a majority of the cluster with it: while it is removed and then
    added back unstarted, etcd commits only with that many."""
    members = [m.name for m in config.members]
    others = [m for m in members if m != name]
    if not others:
        raise LabError(
            f"cannot replace {name}: it is the cluster's only etcd member, and no other "
            "member would be left to remove it and add it back",
            hint="`lab destroy` and `lab up` make a new cluster",
        )
    majority = len(members) // 2 + 1
    up = [m for m in others if m in healthy]
    if len(up) < majority:
        down = [m for m in others if m not in healthy]
        raise LabError(
            f"cannot replace {name}: etcd keeps a quorum only with {majority} of its "
            f"{len(members)} members healthy besides {name}, and only "
            f"{len(up)} are ({', '.join(up) or 'none'}; not healthy: {', '.join(down)})",
            hint=f"`lab start {' '.join(down)}` (or wait for them), then `lab replace {name}`",
        )


def member_named(
    members: Sequence[EtcdMember], name: str, url: str, *, started: bool
) -> EtcdMember | None:
    """The member ``name`` in the list: by its name, or (added, not started yet) by its
    peer URL; with ``started`` only a member that has started counts."""
    for member in members:
        if member.name == name or (not member.name and url in member.peer_urls):
            if started and not member.started:
                continue
            return member
    return None


def done_steps(state_extra: Mapping[str, object], name: str) -> tuple[str, ...]:
    """The steps of ``name``'s replacement done so far; LabError if another node's
    replacement is under way (it is finished first)."""
    record = state_extra.get(REPLACING)
    if not isinstance(record, dict):
        return ()
    node = str(record.get("node", ""))
    if node and node != name:
        raise LabError(
            f"cannot replace {name}: the replacement of {node} is not finished",
            hint=f"`lab replace {node}` finishes it (or `lab destroy`)",
        )
    steps = record.get("done", [])
    return tuple(str(step) for step in steps) if isinstance(steps, list) else ()


# --- etcd's side (a runner on a healthy member; on loopback in the tests) ------------------


def healthy_members(runner: Runner, urls: Mapping[str, str]) -> set[str]:
    """The members of ``urls`` (name -> client URL) that answer healthy."""
    if not urls:
        return set()
    answers = {
        h.endpoint: h.healthy for h in facts.endpoint_health(list(urls.values())).run(runner)
    }
    return {name for name, url in urls.items() if answers.get(url)}


def remove_member(
    runner: Runner, endpoints: Sequence[str], name: str, url: str, timeout: float = ADD_TIMEOUT
) -> str | None:
    """``etcdctl member remove`` of the member ``name``; its hex id, or None when the
    cluster has no such member (already removed)."""
    member = member_named(facts.member_list(endpoints).run(runner), name, url, started=False)
    if member is None:
        return None
    removal = facts.member_remove(endpoints, member.hex_id)

    def remove() -> bool:
        if member_named(facts.member_list(endpoints).run(runner), name, url, started=False):
            _refused_for_now(lambda: removal.run(runner))
        return True

    wait_for(
        name,
        "etcd to accept `etcdctl member remove`",
        time.monotonic() + timeout,
        remove,
        interval=1.0,
    )
    return member.hex_id


def _refused_for_now(call: Callable[[], object]) -> None:
    """``call()``; NotReady (retried) when etcd refuses a membership change for now: its
    strict reconfiguration check ("unhealthy cluster"), or a commit that timed out
    while the members elect a leader."""
    try:
        call()
    except RemoteError as exc:
        if any(sign in exc.message for sign in RETRIED):
            raise NotReady(
                f"etcd refuses the change for now: {exc.message.splitlines()[-1]}"
            ) from exc
        raise


def add_member(
    runner: Runner,
    endpoints: Sequence[str],
    name: str,
    url: str,
    timeout: float = ADD_TIMEOUT,
) -> str:
    """``etcdctl member add`` of ``name`` at the peer URL ``url``, unless a member with
    that peer URL is there already (added before); its hex id.

    etcd refuses an add ("unhealthy cluster", its strict reconfiguration check) until
    its leader has been connected to the members for a while, as just after a member
    was removed: that refusal is retried until ``timeout`` (see :func:`_refused_for_now`)."""

    def add() -> bool:
        if not any(url in m.peer_urls for m in facts.member_list(endpoints).run(runner)):
            _refused_for_now(lambda: facts.member_add(endpoints, name, url).run(runner))
        return True

    members = facts.member_list(endpoints).run(runner)
    found = [m for m in members if url in m.peer_urls]
    if not found:
        wait_for(
            name,
            "etcd to accept `etcdctl member add`",
            time.monotonic() + timeout,
            add,
            interval=1.0,
        )
        members = facts.member_list(endpoints).run(runner)
        found = [m for m in members if url in m.peer_urls]
    if not found:
        raise LabError(f"etcd does not list {name} at {url} after `etcdctl member add`")
    return found[0].hex_id


# --- the lab -------------------------------------------------------------------------------


class _Replacement:
    """One replacement under the lab's lock: the state, the record of steps, a runner
    on a healthy member other than the node."""

    def __init__(self, config: LabConfig, node: NodeSpec, backends: Backends) -> None:
        self.config, self.node, self.backends = config, node, backends
        self.book = StateFile(config.state_dir)
        self.done = list(done_steps(self.book.state.extra, node.name))
        others = {m.name: u for m, u in zip(config.members, _urls(config), strict=True)}
        self.urls = {n: u for n, u in others.items() if n != node.name}

    @property
    def is_member(self) -> bool:
        return self.node.is_member

    def record(self, step: str) -> None:
        if step not in self.done:
            self.done.append(step)
        extra = {**self.book.state.extra, REPLACING: {"node": self.node.name, "done": self.done}}
        self.book.state = replace(self.book.state, extra=extra)
        self.book.save()

    def finish(self) -> None:
        extra = {k: v for k, v in self.book.state.extra.items() if k != REPLACING}
        self.book.state = replace(self.book.state, extra=extra)
        self.book.save()

    @contextlib.contextmanager
    def member_runner(self) -> Iterator[tuple[Runner, list[str]]]:
        """A runner on the first other member that answers, with the endpoints of the
        other members that answer healthy; the quorum checked first."""
        errors = []
        for member in self.config.members:
            if member.name == self.node.name or not self.book.state.host_keys.get(member.name):
                continue
            runner = self.backends.runner(self.config, self.book.state, member)
            try:
                healthy = healthy_members(runner, self.urls)
            except TRANSIENT as exc:
                errors.append(f"{member.name}: {exc}")
                runner.close()
                continue
            try:
                check_quorum(self.config, self.node.name, healthy)
                yield runner, [u for n, u in self.urls.items() if n in healthy]
            finally:
                runner.close()
            return
        check_quorum(self.config, self.node.name, set())  # none answered: refused here
        raise LabError(f"no etcd member besides {self.node.name} answers: " + "; ".join(errors))


def _urls(config: LabConfig) -> list[str]:
    return readiness.member_endpoints(config)


def _check_up(config: LabConfig, book: StateFile) -> None:
    if "cluster" not in book.state.phases:
        raise LabError(
            f"lab {config.name} is not up",
            hint="`lab up` first, then `lab replace`",
        )


def throw_away(
    config: LabConfig,
    name: str,
    progress: Progress,
    *,
    backends: Backends | None = None,
) -> tuple[str | None, str | None]:
    """The first half: the member removed from etcd (a member), the node and its disk
    gone, its identity forgotten. The old member's hex id and machine-id."""
    node = check_replaceable(config, name)
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        job = _Replacement(config, node, backends)
        _check_up(config, job.book)
        return _throw_away(job, progress)


def _throw_away(job: _Replacement, progress: Progress) -> tuple[str | None, str | None]:
    name = job.node.name
    old_id = None
    if job.is_member and MEMBER_REMOVED not in job.done:
        progress.update(name, "replace", "running", "etcdctl member remove")
        with job.member_runner() as (runner, endpoints):
            old_id = remove_member(runner, endpoints, name, peer_url(job.node))
        job.record(MEMBER_REMOVED)
    elif job.is_member and THROWN_AWAY not in job.done:
        with job.member_runner():
            pass  # the quorum is checked again before the node goes
    old_machine = job.book.state.machine_ids.get(name)
    if THROWN_AWAY not in job.done:
        progress.update(name, "replace", "running", "powering off, removing its disk")
        discard(job.config, job.node, job.book, job.backends)
        job.record(THROWN_AWAY)
    progress.update(
        name, "replace", "ok", "thrown away" + (f" (member {old_id})" if old_id else "")
    )
    return old_id, old_machine


def rejoin(
    config: LabConfig,
    name: str,
    progress: Progress,
    *,
    backends: Backends | None = None,
    accel: str = "auto",
) -> Replaced:
    """The second half: the member added back, a fresh node booted and checked in. Also
    finishes a replacement whose first half is not done (it is done first)."""
    node = check_replaceable(config, name)
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        job = _Replacement(config, node, backends)
        _check_up(config, job.book)
        old_id, old_machine = (None, None)
        if THROWN_AWAY not in job.done:
            old_id, old_machine = _throw_away(job, progress)
        return _rejoin(job, progress, accel, old_id, old_machine)


def replace_node(
    config: LabConfig,
    name: str,
    progress: Progress,
    *,
    backends: Backends | None = None,
    accel: str = "auto",
) -> Replaced:
    """``lab replace NAME``: both halves, or what is left of them after a failure."""
    return rejoin(config, name, progress, backends=backends, accel=accel)


def _rejoin(
    job: _Replacement,
    progress: Progress,
    accel: str,
    old_id: str | None,
    old_machine: str | None,
) -> Replaced:
    config, node, name = job.config, job.node, job.node.name
    new_id = None
    if job.is_member:
        progress.update(name, "replace", "running", "etcdctl member add")
        with job.member_runner() as (runner, endpoints):
            new_id = add_member(runner, endpoints, name, peer_url(node))
        job.record(MEMBER_ADDED)
        job.book.state = with_joined(job.book.state, name)
        job.book.save()
    progress.update(name, "replace", "running", "rendering, booting a fresh node")
    render(config, accel=accel)  # its user-data: initial-cluster-state existing
    job.book.reload()
    _, joined = boot_nodes(config, [node], job.book, job.backends, progress)
    detail = joined
    if job.is_member:
        detail = _check_member(job, progress)
    new_machine = job.book.state.machine_ids.get(name)
    job.finish()
    progress.update(name, "replace", "ok", detail)
    return Replaced(name, job.is_member, old_id, new_id, old_machine, new_machine, detail)


def _check_member(job: _Replacement, progress: Progress) -> str:
    """etcd lists the member started, every member healthy; with flannel on, every node
    holds a subnet lease (the new node's may be its old one, reused by flanneld)."""
    config, name = job.config, job.node.name
    runner = job.backends.runner(config, job.book.state, job.node)
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    try:

        def started() -> str:
            members = facts.member_list(_urls(config)).run(runner)
            if member_named(members, name, peer_url(job.node), started=True) is None:
                raise NotReady(f"etcd does not list {name} started yet")
            healthy = readiness.etcd_healthy(config, runner)
            if healthy is None:
                raise NotReady("etcd not healthy yet")
            return healthy

        summary = wait_for(
            name,
            "etcd listing it started and every member healthy",
            deadline,
            started,
            interval=readiness.HOST_POLL,
            transient=TRANSIENT,
        )
        if config.flannel.enabled:
            overlay = wait_for(
                "flannel",
                "a subnet lease for every node",
                deadline,
                lambda: readiness.flannel_ready(config, runner),
                interval=readiness.HOST_POLL,
                transient=TRANSIENT,
            )
            summary += f"; overlay {overlay}"
    finally:
        runner.close()
    progress.update(name, "replace", "running", summary)
    return f"{name} joined etcd ({summary}) and fleet"

"""``lab scale --workers M``: a running lab's worker pool grown or shrunk; the core stays.

The plan is pure: from the lab as configured, the nodes that exist and the ones that
are up, it says which workers to add and which to remove (the highest-numbered
first), or refuses before anything changes. The scale then records the new shape in
``.lab/state.json`` (``load_lab`` applies it; lab.yaml is never rewritten) and works
from what exists, so a re-run of the same ``lab scale`` after an interruption
finishes it and ``lab destroy`` removes everything:

- removing a worker: fleet stopped on it (fleet reschedules its units) and waited
  out until fleet lists neither the machine nor a unit on it, the node shut down,
  its domain, disks, config drive and console volume removed, its DHCP
  reservation deleted, its pins and known_hosts lines forgotten;
- adding a worker: rendered (user-data, Vagrantfile, config.rb for the new count),
  its DHCP reservation added to the running network (live and persistent), its
  config drive made, ``vagrant up`` of that node alone, the node waited for like in
  ``lab up`` (host keys pinned from its console);
- then every node is given every node's host key again, and the new nodes are
  checked back in: fleet lists each one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from provisioner import facts, readiness
from provisioner import nodes as node_access
from provisioner.config import FIRST_HOST, MAX_NODES, LabConfig, NodeSpec, Overrides
from provisioner.errors import ConfigError, LabError, NodeError, NotReady
from provisioner.hypervisor.naming import object_prefix
from provisioner.hypervisor.vagrantpid import stop_left_running
from provisioner.lab import ScaleRecord, load_lab, render, scale_record, with_scale
from provisioner.lifecycle import infra
from provisioner.lifecycle.backends import Backends, NodeRunner, default_backends
from provisioner.lifecycle.cluster import TRANSIENT, check_rejoined
from provisioner.lifecycle.nodewait import NodeWaiter
from provisioner.locks import file_lock, host_lock_path
from provisioner.parsers import FleetUnitState
from provisioner.progress import LAB, Progress
from provisioner.readiness import NodeFacts
from provisioner.remote.runner import Runner
from provisioner.state import StateFile
from provisioner.waits import wait_for

DRAIN_TIMEOUT = 300.0  # fleet drops a stopped machine after its agent TTL, then reschedules
SHUTDOWN_TIMEOUT = 120.0  # a drained worker's clean shutdown; then the plug is pulled
BOOT_TIMEOUT = 1800.0
FLEET_UNITS: facts.Fact[tuple[FleetUnitState, ...]] = facts.Fact(
    "fleet units",
    ("fleetctl", "list-units", "--full", "--no-legend"),
    lambda result: _parse_units(result.stdout),
)
CORE_REFUSAL = (
    "lab scale changes only the worker pool: growing or shrinking the etcd core of a "
    "running cluster needs `etcdctl member add` / `etcdctl member remove` one member at "
    "a time, which lab does not do"
)


def _parse_units(stdout: str) -> tuple[FleetUnitState, ...]:
    from provisioner.parsers import parse_list_units

    return parse_list_units(stdout)


# --- the plan (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class ScalePlan:
    """What one ``lab scale`` does: the lab it makes, the nodes it adds and removes."""

    target: LabConfig
    add: tuple[NodeSpec, ...]  # in index order
    remove: tuple[NodeSpec, ...]  # highest-numbered first

    @property
    def unchanged(self) -> bool:
        return not self.add and not self.remove


def max_nodes_in(subnet: ipaddress.IPv4Network) -> int:
    """How many nodes fit in ``subnet`` at .101 upward (the last address is broadcast)."""
    return min(MAX_NODES, subnet.num_addresses - 1 - FIRST_HOST)


def plan_scale(
    current: LabConfig,
    workers: int,
    *,
    present: Collection[str],
    ready: Collection[str],
    build: Callable[[Overrides], LabConfig],
    nodes: int | None = None,
) -> ScalePlan:
    """The plan to bring ``current`` to ``workers`` workers; ConfigError or LabError,
    naming the flag and a fix, when it cannot be done (nothing has changed then).

    ``present``: the nodes with anything of theirs left (a domain, pins, a drive);
    ``ready``: those up and pinned. ``build`` makes the lab's config for a shape."""
    core = current.members
    core_names = [n.name for n in core]
    if workers < 0:
        raise ConfigError(
            f"must be 0 or more, got {workers}",
            key="--workers",
            hint=f"`lab scale --workers 0` leaves the {len(core)} core nodes alone",
        )
    if nodes is not None and nodes - workers != len(core):
        raise ConfigError(
            f"--nodes {nodes} with --workers {workers} makes a core of {nodes - workers}, "
            f"but this lab's core is {len(core)} ({', '.join(core_names)}); {CORE_REFUSAL}",
            key="--nodes",
            hint=f"leave out --nodes (`lab scale --workers {workers}` keeps the core), or "
            "`lab destroy` and `lab up --nodes N --workers M` for another core",
        )
    down = [name for name in core_names if name not in ready]
    if down:
        raise LabError(
            f"lab {current.name} is not up: {', '.join(down)} not running",
            hint="`lab up` (or `lab start " + " ".join(down) + "`) first, then `lab scale`",
        )
    count = len(core) + workers
    room = max_nodes_in(current.network)
    if count > room:
        raise ConfigError(
            f"{workers} workers make {count} nodes; subnet {current.subnet} holds "
            f"{room} at .{FIRST_HOST} upward",
            key="--workers",
            hint=f"use --workers {max(0, room - len(core))} or fewer, or a lab with a "
            "larger subnet (lab.yaml `subnet`)",
        )
    beyond = [n.name for n in core if n.index > count]
    if beyond:
        raise ConfigError(
            f"{workers} workers would remove core node(s) {', '.join(beyond)}; {CORE_REFUSAL}",
            key="--workers",
            hint=f"use --workers {len(current.workers)} or more (a node's `role: core` in "
            "lab.yaml keeps it in the core)",
        )
    target = build(Overrides(num_instances=count, workers=workers))
    if [n.name for n in target.members] != core_names:
        raise ConfigError(
            f"{workers} workers would make the core {', '.join(n.name for n in target.members)}"
            f" instead of {', '.join(core_names)}; {CORE_REFUSAL}",
            key="--workers",
            hint="a node's `role: core` in lab.yaml's `nodes` must stay among the first "
            "nodes; `lab destroy` and `lab up` for another core",
        )
    wanted = {n.name for n in target.nodes}
    indexes = [node_index(current, name) for name in present]
    highest = max([i for i in indexes if i is not None] + [count])
    # the specs of nodes left beyond the target (an earlier, larger shape): workers all
    wide = target
    if highest > count:
        wide = build(Overrides(num_instances=highest, workers=highest - len(core)))
    remove = [n for n in wide.nodes if n.name in present and n.name not in wanted]
    add = tuple(n for n in target.nodes if n.name not in ready)
    return ScalePlan(
        target=target,
        add=add,
        remove=tuple(sorted(remove, key=lambda n: n.index, reverse=True)),
    )


def node_index(config: LabConfig, name: str) -> int | None:
    """The index of ``<prefix>-NN``, or None for a name that is not one of the lab's."""
    prefix = f"{config.instance_name_prefix}-"
    number = name.removeprefix(prefix)
    if name == number or not number.isdigit():
        return None
    return int(number)


# --- the scale ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleResult:
    nodes: int
    workers: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    base: tuple[int, int]  # lab.yaml's shape (nodes, workers)
    detail: str


def scale(
    config: LabConfig,
    workers: int,
    progress: Progress,
    *,
    nodes: int | None = None,
    backends: Backends | None = None,
    accel: str = "auto",
) -> ScaleResult:
    """Grow or shrink the worker pool of the running lab ``config`` to ``workers``;
    ``accel`` as given to ``lab up`` (the Vagrantfile is rendered again with it)."""
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        stop_left_running(config.state_dir, config.directory)  # a killed lab's vagrant
        book = StateFile(config.state_dir)
        if "cluster" not in book.state.phases:
            raise LabError(
                f"lab {config.name} is not up",
                hint="`lab up` first, then `lab scale`",
            )
        present, ready = _nodes_now(config, book, backends)

        def build(overrides: Overrides) -> LabConfig:
            return load_lab(config.directory, overrides)

        plan = plan_scale(config, workers, present=present, ready=ready, build=build, nodes=nodes)
        target = plan.target
        old = scale_record(book.state)
        base = (
            (old.base_nodes, old.base_workers) if old else (len(config.nodes), len(config.workers))
        )
        record = ScaleRecord(len(target.nodes), len(target.workers), *base)
        book.state = with_scale(book.state, record)  # from now on every verb sees the new shape
        book.save()
        progress.update(LAB, "scale", "running", _shape(target))
        removed = [_remove(config, target, node, book, backends, progress) for node in plan.remove]
        render(target, accel=accel)
        book.reload()
        _reservations(target, backends)
        added: tuple[str, ...] = ()
        detail = "no change"
        if plan.add:
            added, detail = boot_nodes(target, plan.add, book, backends, progress)
        elif removed:
            _share(target, book, backends)
            detail = f"{', '.join(removed)} removed"
        progress.update(LAB, "scale", "ok", f"{_shape(target)}; {detail}")
        return ScaleResult(
            len(target.nodes), len(target.workers), added, tuple(removed), base, detail
        )


def _shape(config: LabConfig) -> str:
    return f"{len(config.members)} core + {len(config.workers)} workers"


def _nodes_now(config: LabConfig, book: StateFile, backends: Backends) -> tuple[set[str], set[str]]:
    """The nodes with anything left of them, and those running and pinned."""
    prefix = object_prefix(config.name)
    state = book.state
    present = set(state.host_keys) | set(state.machine_ids)
    present |= set(node_access.libvirt_paths(config).get("drives", {}))
    running = set()
    with backends.open_host() as host:
        for domain in host.lab_objects(config.name).domains:
            name = domain.removeprefix(prefix)
            present.add(name)
            if host.state(domain).is_active:
                running.add(name)
    present = {name for name in present if node_index(config, name) is not None}
    ready = {n for n in running if state.host_keys.get(n) and n in state.machine_ids}
    return present, ready


def _reservations(target: LabConfig, backends: Backends) -> None:
    """The running network's DHCP reservations: exactly the target's nodes."""
    from provisioner.hypervisor.network import DhcpHost, lab_network

    hosts = [DhcpHost(n.name, n.mac, ipaddress.IPv4Address(n.ip)) for n in target.nodes]
    spec = lab_network(target.name, target.subnet, hosts)
    with file_lock(host_lock_path(), "libvirt networks"), backends.open_host() as host:
        host.update_dhcp_hosts(spec)


# --- removing a worker -------------------------------------------------------------------


def _remove(
    config: LabConfig,
    target: LabConfig,
    node: NodeSpec,
    book: StateFile,
    backends: Backends,
    progress: Progress,
) -> str:
    """Drain ``node`` out of fleet, then remove it and everything lab kept of it."""
    progress.update(node.name, "remove", "running", "fleet units moving off")
    domain = node_access.domain_of(config, node)
    with backends.open_host() as host:
        exists = domain in host.lab_objects(config.name).domains
        active = exists and host.state(domain).is_active
    machine_id = book.state.machine_ids.get(node.name)
    if active and machine_id and book.state.host_keys.get(node.name):
        drain(target, node, machine_id, book, backends)
    progress.update(node.name, "remove", "running", "shutting down")
    if active:
        with backends.open_host() as host, contextlib.suppress(LabError):
            host.shutdown(domain, timeout=SHUTDOWN_TIMEOUT)  # else discard pulls the plug
    discard(config, node, book, backends)
    progress.update(node.name, "remove", "ok", "domain, volumes and pins removed")
    return node.name


def discard(config: LabConfig, node: NodeSpec, book: StateFile, backends: Backends) -> None:
    """``node`` and everything lab kept of it gone: its domain powered off (the plug
    pulled if it still runs) and undefined with its disks, its config drive and console
    volumes, its pins, machine-id and known_hosts lines (see :func:`_forget`). Its DHCP
    reservation stays. Nothing happens twice: a re-run finds what is left."""
    from provisioner.hypervisor.volumes import config_volume, console_volume

    domain = node_access.domain_of(config, node)
    with backends.open_host() as host:
        if domain in host.lab_objects(config.name).domains:
            host.undefine(domain)
        pool = node_access.libvirt_paths(config).get("pool", {}).get("name", "default")
        for volume in (config_volume(domain), console_volume(domain)):
            host.delete_volume(pool, volume)
    _forget(config, node, book)


def drain(
    target: LabConfig,
    node: NodeSpec,
    machine_id: str,
    book: StateFile,
    backends: Backends,
) -> None:
    """Stop fleet on ``node`` cleanly and wait until fleet, asked on a core node, lists
    neither its machine nor a unit on it (each unit rescheduled elsewhere and active
    there, or left unscheduled when nowhere fits)."""
    leaving = backends.runner(target, book.state, node)
    asked = backends.runner(target, book.state, target.members[0])
    try:
        before = {u.unit for u in FLEET_UNITS.run(asked) if u.machine_id == machine_id}
        result = leaving.run(["sudo", "systemctl", "stop", "fleet.service"], timeout=120)
        if not result.succeeded:
            raise NodeError(
                node.name,
                f"cannot stop fleet.service: {result.stderr.strip() or result.rc}",
                hint="`lab ssh` to it and look at `journalctl -u fleet`; then `lab scale` again",
            )

        def gone() -> bool:
            if machine_id in {m.machine_id for m in facts.FLEET_MACHINES.run(asked)}:
                raise NotReady(f"fleet still lists {node.name}")
            units = FLEET_UNITS.run(asked)
            stuck = sorted(
                u.unit
                for u in units
                if u.unit in before
                and (u.machine_id == machine_id or (u.machine_id and u.active != "active"))
            )
            if stuck:
                raise NotReady(f"units not active elsewhere yet: {', '.join(stuck)}")
            return True

        wait_for(
            node.name,
            "fleet to drop the machine and reschedule its units",
            time.monotonic() + DRAIN_TIMEOUT,
            gone,
            interval=readiness.HOST_POLL,
            transient=TRANSIENT,
            hint="`lab fleetctl list-units` shows where its units are; a unit that fails "
            "elsewhere keeps the node: fix or destroy it, then `lab scale` again",
        )
    finally:
        leaving.close()
        asked.close()


def _forget(config: LabConfig, node: NodeSpec, book: StateFile) -> None:
    """Everything lab kept of a removed node: pins, machine-id, known_hosts lines, its
    drive and the record of where it was, Vagrant's record of the machine."""
    state = book.state
    book.state = replace(
        state,
        host_keys={k: v for k, v in state.host_keys.items() if k != node.name},
        machine_ids={k: v for k, v in state.machine_ids.items() if k != node.name},
    )
    book.save()
    placed = node_access.libvirt_paths(config)
    if placed:
        for section in ("drives", "consoles"):
            placed.get(section, {}).pop(node.name, None)
        infra.write_libvirt_paths(config, placed)
    node_access.forget_known_hosts(config, node)
    infra.drive_path(config, node.name).unlink(missing_ok=True)
    shutil.rmtree(config.directory / ".vagrant" / "machines" / node.name, ignore_errors=True)
    rendered = config.directory / "nodes" / node.name
    (rendered / "user-data").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        rendered.rmdir()  # kept if the user put files of their own there


# --- adding workers ----------------------------------------------------------------------


def boot_nodes(
    target: LabConfig,
    adding: Sequence[NodeSpec],
    book: StateFile,
    backends: Backends,
    progress: Progress,
) -> tuple[tuple[str, ...], str]:
    """Drives, ``vagrant up`` of each new node, the node waits of ``lab up``, host keys
    shared, and fleet listing every new node."""
    infra.drives(target, backends.open_host, only=adding)
    logs = node_access.log_dir(target)
    logs.mkdir(parents=True, exist_ok=True)
    booter = backends.booter(target.directory, logs / "vagrant.log")
    waiter = NodeWaiter(target, progress, backends, book)
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        with ThreadPoolExecutor(max_workers=len(adding)) as pool:
            waits: dict[str, Future[NodeFacts | BaseException]] = {}
            try:
                for node in adding:
                    progress.update(node.name, "boot", "running")
                    booter.up(
                        node.name,
                        timeout=max(1.0, deadline - time.monotonic()),
                        provision=False,
                    )
                    progress.update(node.name, "boot", "ok")
                    # its wait runs while the next node boots
                    waits[node.name] = pool.submit(waiter.ready, node)
            except BaseException:
                waiter.cancel.set()  # the waits under way give up at their next poll
                waiter.close()
                raise
            outcomes = {name: future.result() for name, future in waits.items()}
        failures = [o for o in outcomes.values() if isinstance(o, BaseException)]
        ready = {n: o for n, o in outcomes.items() if isinstance(o, NodeFacts)}
        if ready:
            node_access.write_known_hosts(
                target, {n: waiter.runners[n].known_hosts_entry() for n in ready}
            )
        book.state = replace(
            book.state,
            machine_ids={**book.state.machine_ids, **{n: f.machine_id for n, f in ready.items()}},
        )
        book.save()
        if failures:
            from provisioner.lifecycle.teardown import save_diagnostics

            where = save_diagnostics(target, book.state, backends)
            raise LabError(
                f"{len(failures)} of {len(outcomes)} new nodes are not ready:\n"
                + "\n".join(f"  {f}" for f in failures),
                hint=f"consoles and journals saved in {where}; the same command again resumes",
            )
        _share(target, book, backends, waiter.runners)
        joined = check_rejoined(
            target,
            {n: waiter.runners[n] for n in ready},
            book.state.machine_ids,
            progress,
        )
    finally:
        waiter.close()
    return tuple(ready), joined.replace("back in etcd and fleet", "joined fleet")


def _share(
    target: LabConfig,
    book: StateFile,
    backends: Backends,
    have: Mapping[str, NodeRunner] | None = None,
) -> None:
    """Every node of ``target`` given every node's host key (and no removed node's)."""
    made: dict[str, Runner] = {}
    runners: dict[str, Runner] = dict(have or {})
    try:
        for node in target.nodes:
            if node.name not in runners:
                made[node.name] = runners[node.name] = backends.runner(target, book.state, node)
        node_access.share_host_keys(target, runners)
    finally:
        for runner in made.values():
            runner.close()

"""Snapshots of a whole lab: every node's disk and memory, taken at one moment.

``save`` pauses every node, takes each node's snapshot (in parallel) while all are
paused, and lets them all run again, so etcd and fleet come back as the one
cluster they were. ``restore`` reverts every node to its snapshot paused, resumes
them together, steps each guest's clock to the host's (the guests' clocks stood
still while they were saved), and runs ``lab up``'s readiness checks: the nodes
answer with their pinned host keys, systemd is running, etcd is healthy with a
leader and takes a write, fleet lists every machine. The mechanism, libvirt's
internal snapshots, is explained in :mod:`provisioner.hypervisor.snapshots`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from provisioner import nodes as node_access
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import LabError
from provisioner.hypervisor import snapshots as domain_snapshots
from provisioner.hypervisor.libvirt import DomainState, LibvirtHost
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.lifecycle.teardown import ready_nodes
from provisioner.locks import file_lock
from provisioner.progress import LAB, Progress
from provisioner.state import load_state

T = TypeVar("T")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class LabSnapshot:
    """One snapshot of the lab: its name, when it was taken, and which nodes have it."""

    name: str
    created: int
    nodes: tuple[str, ...]
    missing: tuple[str, ...]  # nodes of the lab without it (a node added later)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class SnapshotResult:
    name: str
    nodes: tuple[str, ...]
    seconds: float  # the whole operation
    paused_seconds: float  # how long the nodes stood still (save) or took to revert
    detail: str = ""  # restore: the cluster checks' summary


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(
            f"snapshot name {name!r} is not valid",
            hint="use letters, digits, '.', '_' and '-' (at most 64; a letter or digit first)",
        )
    return name


def _domains(config: LabConfig) -> dict[str, str]:
    return {node.name: node_access.domain_of(config, node) for node in config.nodes}


def _each(
    backends: Backends, items: Sequence[str], action: Callable[[LibvirtHost, str], T]
) -> list[T]:
    """``action`` on every domain at once, each thread on its own libvirt connection."""

    def one(domain: str) -> T:
        with backends.open_host() as host:
            return action(host, domain)

    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(one, items))


def listed(config: LabConfig, backends: Backends | None = None) -> list[LabSnapshot]:
    """The lab's snapshots, oldest first (a node without one shows in ``missing``)."""
    backends = backends or default_backends(config.libvirt_uri)
    domains = _domains(config)
    found: dict[str, dict[str, int]] = {}
    with backends.open_host() as host:
        existing = set(host.lab_objects(config.name).domains)
        for node, domain in domains.items():
            if domain not in existing:
                continue
            for snap in domain_snapshots.listed(host, domain):
                found.setdefault(snap.name, {})[node] = snap.created
    return sorted(
        (
            LabSnapshot(
                name=name,
                created=min(by_node.values()),
                nodes=tuple(n for n in domains if n in by_node),
                missing=tuple(n for n in domains if n not in by_node),
            )
            for name, by_node in found.items()
        ),
        key=lambda s: (s.created, s.name),
    )


def find(config: LabConfig, name: str, backends: Backends | None = None) -> LabSnapshot | None:
    return next((s for s in listed(config, backends) if s.name == name), None)


def save(
    config: LabConfig, name: str, progress: Progress, backends: Backends | None = None
) -> SnapshotResult:
    """Every node paused, each node's snapshot taken, every node running again."""
    check_name(name)
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        if find(config, name, backends) is not None:
            raise LabError(
                f"lab {config.name} already has a snapshot {name}",
                hint=f"`lab snapshot rm {name}` first, or choose another name",
            )
        domains = _domains(config)
        _require_running(config, backends, domains)
        started = time.monotonic()
        progress.update(LAB, "snapshot", "running", f"pausing {len(domains)} nodes")
        description = f"lab {config.name}: {', '.join(domains)}"
        taken: list[str] = []
        try:
            _each(backends, list(domains.values()), lambda host, dom: host.suspend(dom))
            paused_at = time.monotonic()

            def take(host: LibvirtHost, domain: str) -> None:
                domain_snapshots.create(host, domain, name, description)
                taken.append(domain)

            _each(backends, list(domains.values()), take)
        except BaseException:
            _each(backends, taken, lambda host, dom: domain_snapshots.delete(host, dom, name))
            raise
        finally:
            _each(backends, list(domains.values()), lambda host, dom: host.resume(dom))
        paused = time.monotonic() - paused_at
        progress.update(
            LAB, "snapshot", "ok", f"{name}: {len(domains)} nodes, paused {paused:.1f}s"
        )
        return SnapshotResult(name, tuple(domains), time.monotonic() - started, paused)


def restore(
    config: LabConfig, name: str, progress: Progress, backends: Backends | None = None
) -> SnapshotResult:
    """Every node back to snapshot ``name`` at once, clocks stepped, the lab checked."""
    check_name(name)
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        snapshot = find(config, name, backends)
        if snapshot is None:
            known = ", ".join(s.name for s in listed(config, backends)) or "none"
            raise LabError(
                f"lab {config.name} has no snapshot {name} (it has: {known})",
                hint=f"`lab snapshot save {name}` takes one; `lab snapshot list` shows them",
            )
        if not snapshot.complete:
            raise LabError(
                f"snapshot {name} does not cover {', '.join(snapshot.missing)}",
                hint="those nodes were added after it was taken; take a new snapshot",
            )
        domains = _domains(config)
        backends.registry(config)  # the registry the guests pull from, should it be stopped
        started = time.monotonic()
        progress.update(LAB, "restore", "running", f"reverting {len(domains)} nodes")
        try:
            _each(
                backends,
                list(domains.values()),
                lambda host, dom: domain_snapshots.revert_paused(host, dom, name),
            )
        finally:  # never leave a node paused, also when another failed to revert
            _each(backends, list(domains.values()), _resume_if_paused)
        reverted = time.monotonic() - started
        progress.update(LAB, "restore", "ok", f"{name}: reverted in {reverted:.1f}s")
        detail = _check_restored(config, progress, backends)
        return SnapshotResult(name, tuple(domains), time.monotonic() - started, reverted, detail)


def remove(config: LabConfig, name: str, backends: Backends | None = None) -> tuple[str, ...]:
    """Delete snapshot ``name`` from every node that has it; the nodes it was removed from."""
    check_name(name)
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / "lock", f"lab {config.name}", timeout=5):
        snapshot = find(config, name, backends)
        if snapshot is None:
            raise LabError(
                f"lab {config.name} has no snapshot {name}",
                hint="`lab snapshot list` shows the lab's snapshots",
            )
        domains = _domains(config)
        _each(
            backends,
            [domains[node] for node in snapshot.nodes],
            lambda host, dom: domain_snapshots.delete(host, dom, name),
        )
        return snapshot.nodes


def _resume_if_paused(host: LibvirtHost, domain: str) -> None:
    if host.state(domain) is DomainState.PAUSED:
        host.resume(domain)


def _require_running(config: LabConfig, backends: Backends, domains: dict[str, str]) -> None:
    with backends.open_host() as host:
        existing = set(host.lab_objects(config.name).domains)
        missing = [node for node, dom in domains.items() if dom not in existing]
        if missing:
            raise LabError(
                f"lab {config.name} has no VM for {', '.join(missing)}",
                hint="`lab up` first; a snapshot holds the whole lab",
            )
        stopped = [
            f"{node} ({host.state(dom).name.lower()})"
            for node, dom in domains.items()
            if host.state(dom) is not DomainState.RUNNING
        ]
    if stopped:
        raise LabError(
            f"not every node runs: {', '.join(stopped)}",
            hint="`lab start NODE...` first: a snapshot is of a running lab, taken at one moment",
        )


def _check_restored(config: LabConfig, progress: Progress, backends: Backends) -> str:
    """``lab up``'s node checks (each login stepping the node's clock), then its cluster
    checks, on the restored lab."""
    state = load_state(config.state_dir)
    nodes: Sequence[NodeSpec] = config.nodes
    # pinned: each node's login steps its clock (see NodeWaiter)
    with ready_nodes(config, nodes, progress, backends, pinned=True) as waiter:
        return backends.check_cluster(
            config, waiter.runners, dict(state.machine_ids), progress, lambda: False
        )


__all__ = [
    "LabSnapshot",
    "SnapshotResult",
    "check_name",
    "find",
    "listed",
    "remove",
    "restore",
    "save",
]

"""What a lab's lifecycle drives, as factories: libvirt, Vagrant, SSH and the host.

The steps never build these themselves; they take a :class:`Backends`. The
product uses :func:`default_backends`; tests hand in libvirt's ``test:///default``
driver and fakes for Vagrant, the guests' SSH and the box, so that resuming an
interrupted ``up``, "already up" and a failed node are tested without VMs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provisioner.config import DEFAULT_LIBVIRT_URI, LabConfig, NodeSpec
from provisioner.progress import Progress
from provisioner.remote.runner import Runner
from provisioner.state import LabState

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost


class NodeRunner(Runner, Protocol):
    """A runner on a lab node: SSH as ``user`` with the node's pinned host keys."""

    @property
    def user(self) -> str: ...

    def known_hosts_entry(self) -> str:
        """The node's host key as a known_hosts line."""
        ...


class Booter(Protocol):
    """What boots the lab's nodes: ``vagrant up`` in the lab directory (all of them, or
    the one named)."""

    def up(
        self, node: str | None = ..., *, timeout: float, provision: bool | None = ...
    ) -> None: ...


ClusterCheck = Callable[
    [LabConfig, Mapping[str, Runner], Mapping[str, str], Progress, Callable[[], bool]], str
]


@dataclass(frozen=True)
class Backends:
    """Factories for everything outside the lab's own code."""

    open_host: Callable[[], LibvirtHost]  # a libvirt connection (closed by the caller)
    booter: Callable[[Path, Path], Booter]  # (lab directory, log file) -> vagrant
    runner: Callable[[LabConfig, LabState, NodeSpec], NodeRunner]  # SSH with pinned keys
    # the SSH banner at an address (connect timeout in seconds), None if silent
    banner: Callable[[str, float], str | None]
    prepare_host: Callable[[LabConfig], str]  # daemons, storage pool; a summary
    box: Callable[[LabConfig, Progress, Callable[[], LibvirtHost]], str]  # box ready in the pool
    registry: Callable[[LabConfig], str]  # the host's image registry and the lab's relay
    check_cluster: ClusterCheck  # etcd healthy, a key round trip, fleet lists every node


def default_backends(uri: str = DEFAULT_LIBVIRT_URI) -> Backends:
    """The real thing: libvirt at ``uri``, vagrant-libvirt, paramiko, the host's daemons."""
    from provisioner import nodes, readiness
    from provisioner.hypervisor.libvirt import LibvirtHost
    from provisioner.hypervisor.vagrant import VagrantLab
    from provisioner.lifecycle.cluster import check_cluster
    from provisioner.lifecycle.infra import prepare_box, prepare_host, registry

    return Backends(
        open_host=lambda: LibvirtHost.open(uri),
        booter=lambda root, log: VagrantLab(root, log, uri=uri),
        runner=nodes.runner,
        banner=lambda address, timeout: readiness.ssh_banner(
            address, timeout=timeout, read_timeout=readiness.BANNER_READ_TIMEOUT
        ),
        prepare_host=prepare_host,
        box=prepare_box,
        registry=registry,
        check_cluster=check_cluster,
    )

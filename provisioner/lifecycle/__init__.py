"""A lab's life, cut by noun.

- :mod:`~provisioner.lifecycle.steps`: ``lab up`` as named steps, their state on disk;
- :mod:`~provisioner.lifecycle.infra`: the infrastructure steps (host, box, network,
  discovery, config drives);
- :mod:`~provisioner.lifecycle.nodewait`: the one node waiter of ``up`` and ``start``;
- :mod:`~provisioner.lifecycle.cluster`: the etcd and fleet checks;
- :mod:`~provisioner.lifecycle.teardown`: drills (kill, stop, start), halt, logs, destroy;
- :mod:`~provisioner.lifecycle.faults`: network faults (partition, heal, netem) and
  etcd's leader and quorum for the member drills;
- :mod:`~provisioner.lifecycle.snapshots`: a whole lab saved and brought back;
- :mod:`~provisioner.lifecycle.backends`: the factories for libvirt, Vagrant, SSH and
  the host that every step takes, so tests can hand in their own.
"""

from __future__ import annotations

from provisioner.lifecycle import fastpath, snapshots
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.lifecycle.steps import PHASES, NodeReport, Run, UpResult, up
from provisioner.lifecycle.teardown import (
    DestroyResult,
    collect_logs,
    destroy,
    halt,
    kill,
    kill_leader,
    kill_quorum,
    save_diagnostics,
    start,
    stop,
)

__all__ = [
    "PHASES",
    "Backends",
    "DestroyResult",
    "NodeReport",
    "Run",
    "UpResult",
    "collect_logs",
    "default_backends",
    "destroy",
    "fastpath",
    "halt",
    "kill",
    "kill_leader",
    "kill_quorum",
    "save_diagnostics",
    "snapshots",
    "start",
    "stop",
    "up",
]

"""A fault injector for ``lab drill``'s engine over etcd processes on loopback: the
same engine the lab runs, with SIGKILL + restart for a killed node and
SIGSTOP/SIGCONT for a partitioned one (a stopped process answers nobody, as a node
cut off the network does)."""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.drill.plan import Fault
from tests.etcd_support import EtcdMember


class LocalInjector:
    def __init__(self, members: Sequence[EtcdMember], cluster_flag: str) -> None:
        self.members = {member.name: member for member in members}
        self.cluster_flag = cluster_flag
        self.log: list[tuple[str, Fault, tuple[str, ...]]] = []

    def unavailable(self, fault: Fault) -> str | None:
        return "no netem on loopback processes" if fault is Fault.DELAY else None

    def inject(self, fault: Fault, nodes: Sequence[str]) -> None:
        self.log.append(("inject", fault, tuple(nodes)))
        for name in nodes:
            if fault is Fault.KILL:
                self.members[name].stop()  # SIGKILL; its data directory stays
            else:
                self.members[name].pause()

    def recover(self, fault: Fault, nodes: Sequence[str]) -> None:
        self.log.append(("recover", fault, tuple(nodes)))
        for name in nodes:
            if fault is Fault.KILL:
                self.members[name].start(self.cluster_flag)
            else:
                self.members[name].resume()

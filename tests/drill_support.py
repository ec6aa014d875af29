"""A fault injector for ``lab drill``'s engine over etcd processes on loopback: the
same engine the lab runs, with SIGKILL + restart for a killed node and
SIGSTOP/SIGCONT for a partitioned one (a stopped process answers nobody, as a node
cut off the network does), and for a replaced one ``lab replace``'s own etcd steps
through etcdctl on the host: SIGKILL, its data directory deleted, ``member remove``;
then ``member add`` and a fresh start with initial-cluster-state existing."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from provisioner.drill.plan import Fault
from provisioner.lifecycle.replace import add_member, remove_member
from provisioner.remote.local import LocalRunner
from tests.etcd_support import EtcdMember
from tests.loopback import wait_until_ready


class LocalInjector:
    def __init__(self, members: Sequence[EtcdMember], cluster_flag: str) -> None:
        self.members = {member.name: member for member in members}
        self.cluster_flag = cluster_flag
        self.log: list[tuple[str, Fault, tuple[str, ...]]] = []
        self.runner = LocalRunner(name="host")
        self.removed: dict[str, str | None] = {}  # replaced member -> its old hex id
        self.added: dict[str, str] = {}  # replaced member -> its new hex id

    def others(self, name: str) -> list[str]:
        return [m.client_url for m in self.members.values() if m.name != name]

    def unavailable(self, fault: Fault) -> str | None:
        return "no netem on loopback processes" if fault is Fault.DELAY else None

    def inject(self, fault: Fault, nodes: Sequence[str]) -> None:
        self.log.append(("inject", fault, tuple(nodes)))
        for name in nodes:
            if fault is Fault.KILL:
                self.members[name].stop()  # SIGKILL; its data directory stays
            elif fault is Fault.REPLACE:
                member = self.members[name]
                member.stop()
                shutil.rmtree(member.directory / "data", ignore_errors=True)
                self.removed[name] = remove_member(
                    self.runner, self.others(name), name, member.peer_url
                )
            else:
                self.members[name].pause()

    def recover(self, fault: Fault, nodes: Sequence[str]) -> None:
        self.log.append(("recover", fault, tuple(nodes)))
        for name in nodes:
            if fault is Fault.KILL:
                self.members[name].start(self.cluster_flag)
            elif fault is Fault.REPLACE:
                member = self.members[name]
                self.added[name] = add_member(self.runner, self.others(name), name, member.peer_url)
                # the members now and itself, at the same URLs: the cluster flag again
                member.start(self.cluster_flag, "--initial-cluster-state=existing")
                wait_until_ready(
                    f"etcd {name} joined afresh", member.process, member.log, member.healthy, 60.0
                )
            else:
                self.members[name].resume()

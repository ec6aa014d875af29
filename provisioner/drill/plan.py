"""The drill's scenarios as data: which fault, on whom, and what the cluster must do.

The names follow etcd's functional tester (tests/functional, ``rpcpb.Case``), mapped
to the levers a lab has: a hard power-off (``lab kill``) for its SIGTERM cases, a cut
off the lab network (``lab partition``) for its BLACKHOLE_PEER_PORT_TX_RX cases, and
netem on the node's lab link (``lab netem``) for its DELAY_PEER_PORT_TX_RX cases, and
``lab replace`` for its SIGQUIT_AND_REMOVE_ONE_FOLLOWER case
(tests/functional/tester/case_sigquit_remove.go: inject stops the member, removes its
data and ``member remove``s it through another member; recover ``member add``s it with
its peer URLs and starts it fresh with initial-cluster-state existing). The lab's
levers act on all of a node's traffic, not on the peer port alone.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.errors import ConfigError


class Fault(enum.Enum):
    KILL = "kill"  # recovered by starting the node again
    PARTITION = "partition"  # recovered by healing
    DELAY = "delay"  # recovered by healing
    REPLACE = "replace"  # member removed, node thrown away; recovered by a fresh member added


class Target(enum.Enum):
    FOLLOWER = "follower"  # one member that does not lead
    LEADER = "leader"  # the member that leads when the fault is injected
    QUORUM = "quorum"  # a majority of the members, the leader first


@dataclass(frozen=True)
class Scenario:
    name: str
    etcd_case: str  # the functional tester's closest case
    fault: Fault
    target: Target

    @property
    def stops_writes(self) -> bool:
        """A majority gone (killed or cut off) leaves no quorum: writes must stop.
        A delayed majority still commits, slowly."""
        return self.target is Target.QUORUM and self.fault is not Fault.DELAY

    @property
    def elects(self) -> bool:
        """The members left must elect a new leader while the fault lasts."""
        return self.target is Target.LEADER and self.fault is not Fault.DELAY


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("follower-killed", "SIGTERM_ONE_FOLLOWER", Fault.KILL, Target.FOLLOWER),
    Scenario("leader-killed", "SIGTERM_LEADER", Fault.KILL, Target.LEADER),
    Scenario("quorum-killed", "SIGTERM_QUORUM", Fault.KILL, Target.QUORUM),
    Scenario(
        "follower-partitioned",
        "BLACKHOLE_PEER_PORT_TX_RX_ONE_FOLLOWER",
        Fault.PARTITION,
        Target.FOLLOWER,
    ),
    Scenario(
        "leader-partitioned", "BLACKHOLE_PEER_PORT_TX_RX_LEADER", Fault.PARTITION, Target.LEADER
    ),
    Scenario(
        "quorum-partitioned", "BLACKHOLE_PEER_PORT_TX_RX_QUORUM", Fault.PARTITION, Target.QUORUM
    ),
    Scenario(
        "follower-delayed", "DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER", Fault.DELAY, Target.FOLLOWER
    ),
    Scenario("leader-delayed", "DELAY_PEER_PORT_TX_RX_LEADER", Fault.DELAY, Target.LEADER),
    Scenario("member-replaced", "SIGQUIT_AND_REMOVE_ONE_FOLLOWER", Fault.REPLACE, Target.FOLLOWER),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def select_scenarios(names: Sequence[str]) -> tuple[Scenario, ...]:
    """The scenarios named (each also by its etcd case, any case), in the order given;
    every one when none is named. ConfigError naming the first unknown one."""
    if not names:
        return SCENARIOS
    aliases = {s.etcd_case.lower(): s for s in SCENARIOS} | BY_NAME
    chosen = []
    for name in names:
        scenario = aliases.get(name.lower())
        if scenario is None:
            raise ConfigError(
                f"no drill scenario {name!r}",
                key="SCENARIO",
                hint="scenarios: " + ", ".join(s.name for s in SCENARIOS),
            )
        if scenario not in chosen:
            chosen.append(scenario)
    return tuple(chosen)


def victims(target: Target, members: Sequence[str], leader: str | None) -> tuple[str, ...]:
    """Whom the fault hits: ``members`` in the lab's order, ``leader`` leading now.

    ConfigError when the target does not exist: no follower in a one-member
    cluster, no leader known."""
    majority = len(members) // 2 + 1
    if target is Target.QUORUM:
        ordered = [m for m in members if m == leader] + [m for m in members if m != leader]
        return tuple(ordered[:majority])
    if leader is None or leader not in members:
        raise ConfigError(f"etcd names no leader among {', '.join(members)}", key="SCENARIO")
    if target is Target.LEADER:
        return (leader,)
    followers = [m for m in members if m != leader]
    if not followers:
        raise ConfigError("a one-member cluster has no follower", key="SCENARIO")
    return (followers[-1],)

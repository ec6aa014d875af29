"""Network faults as data, and what the host runs for them.

A lab's faults are one :class:`Faults` value: nodes cut off the lab network
entirely, pairs of nodes cut off from each other, and a netem setting per node.
Every change makes a new value; the host's state is then made to match it as a
whole (one nftables table per lab, replaced in one transaction), so a partial
heal, a re-apply after a domain restart and a fresh partition are the same step.

Partitions are nftables rules in the ``bridge`` family, in a table named after
the lab (``lab-<lab>``). A rule matches a node's tap device (the bridge port the
guest cannot change) *and* the node's MAC address: libvirt hands tap names out
again when a domain stops, so a stale name alone could hit another lab's guest.
Netem is ``tc`` on the traffic leaving the node, by one of two levers (a
:class:`Lever`, recorded per node): on the host, its tap's ingress redirected to an
IFB device named after the lab and the node, with a netem qdisc there; or, where
the host's kernel cannot do that, a netem qdisc on the guest's own lab link, set
over SSH (the guest's root could take it off again).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.errors import ConfigError
from provisioner.hypervisor.naming import check_lab_name, check_node_name

MAX_DELAY_MS = 60_000.0  # a minute: beyond that no etcd timeout is left to exercise
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>us|ms|s)")
_PERCENT = re.compile(r"(?P<number>\d+(?:\.\d+)?)%?")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
IFB_PREFIX = "lf"
GUEST_LINK = "eth0"  # the lab link in the box: its only NIC, named eth0 (net.ifnames=0)
CHAIN_PRIORITY = -200  # before the filter priority a host's own bridge rules use


# --- the faults ---------------------------------------------------------------------


class Lever(enum.Enum):
    """Where a node's netem qdisc sits."""

    HOST = "host"  # an IFB device on the host, fed from the node's tap: out of the guest's reach
    GUEST = "guest"  # the guest's lab link, set over SSH: the guest's root can remove it


@dataclass(frozen=True)
class Netem:
    """Delay, jitter and loss on the traffic a node sends on its lab link, and where
    the qdisc doing it sits."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    on: Lever = Lever.HOST

    def describe(self) -> str:
        parts = []
        if self.delay_ms:
            jitter = f" ±{_ms(self.jitter_ms)}" if self.jitter_ms else ""
            parts.append(f"delay {_ms(self.delay_ms)}{jitter}")
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        return ", ".join(parts) or "nothing"


def _ms(value: float) -> str:
    return f"{value:g}ms"


@dataclass(frozen=True)
class Faults:
    """Everything one lab has injected into its network."""

    isolated: frozenset[str] = frozenset()  # cut off the lab network, the host included
    pairs: frozenset[tuple[str, str]] = frozenset()  # (a, b) with a < b: cut from each other
    netem: Mapping[str, Netem] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.isolated or self.pairs or self.netem)

    def cut(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` cannot reach each other."""
        return a in self.isolated or b in self.isolated or _pair(a, b) in self.pairs

    def nodes(self) -> set[str]:
        """Every node some fault touches."""
        return set(self.isolated) | {n for pair in self.pairs for n in pair} | set(self.netem)


def _pair(a: str, b: str) -> tuple[str, str]:
    first, second = sorted((a, b))
    return (first, second)


def partitioned(faults: Faults, nodes: Sequence[str], peers: Sequence[str] = ()) -> Faults:
    """``faults`` with ``nodes`` cut off the whole lab network, or, with ``peers``,
    only from each of them (in both directions)."""
    if not peers:
        return replace(faults, isolated=faults.isolated | frozenset(nodes))
    cuts = {_pair(a, b) for a in nodes for b in peers if a != b}
    return replace(faults, pairs=faults.pairs | frozenset(cuts))


def with_netem(faults: Faults, node: str, netem: Netem) -> Faults:
    return replace(faults, netem={**faults.netem, node: netem})


def host_side(faults: Faults) -> Faults:
    """What of ``faults`` lives on the host: the partitions and the host's netem."""
    return replace(faults, netem={n: v for n, v in faults.netem.items() if v.on is Lever.HOST})


def guest_netem(faults: Faults) -> dict[str, Netem]:
    """The netem that lives in the guests, by node."""
    return {n: v for n, v in faults.netem.items() if v.on is Lever.GUEST}


def healed(faults: Faults, nodes: Iterable[str] = ()) -> Faults:
    """``faults`` without any fault on ``nodes`` (none named: without any fault)."""
    chosen = set(nodes)
    if not chosen:
        return Faults()
    return Faults(
        isolated=faults.isolated - chosen,
        pairs=frozenset(p for p in faults.pairs if not chosen & set(p)),
        netem={n: v for n, v in faults.netem.items() if n not in chosen},
    )


# --- the record under .lab/ ---------------------------------------------------------


def faults_to_json(faults: Faults) -> dict[str, Any]:
    return {
        "isolated": sorted(faults.isolated),
        "pairs": sorted([a, b] for a, b in faults.pairs),
        "netem": {
            node: {
                "delay_ms": v.delay_ms,
                "jitter_ms": v.jitter_ms,
                "loss_pct": v.loss_pct,
                "on": v.on.value,
            }
            for node, v in sorted(faults.netem.items())
        },
    }


def faults_from_json(raw: Any) -> Faults:
    """The record's faults; ValueError when it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - the caller reports ValueError
    pairs = [tuple(pair) for pair in raw.get("pairs", [])]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("a pair is not two node names")
    return Faults(
        isolated=frozenset(str(n) for n in raw.get("isolated", [])),
        pairs=frozenset(_pair(str(p[0]), str(p[1])) for p in pairs),
        netem={
            str(node): Netem(
                delay_ms=float(v.get("delay_ms", 0)),
                jitter_ms=float(v.get("jitter_ms", 0)),
                loss_pct=float(v.get("loss_pct", 0)),
                on=Lever(v.get("on", Lever.HOST.value)),  # records before the guest lever
            )
            for node, v in dict(raw.get("netem", {})).items()
        },
    )


# --- checking a request ---------------------------------------------------------------


def parse_duration_ms(text: str, option: str) -> float:
    """``200ms``, ``1.5s`` or ``500us`` in milliseconds; ConfigError naming ``option``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigError(
            f"{text!r} is not a duration", key=option, hint="write it as 200ms, 1.5s or 500us"
        )
    value = float(match["number"]) * _UNIT_MS[match["unit"]]
    if value > MAX_DELAY_MS:
        raise ConfigError(f"{text} is longer than {MAX_DELAY_MS / 1000:g}s", key=option)
    return value


def parse_percent(text: str, option: str) -> float:
    """``5%`` (or ``5``) as a number from 0 to 100; ConfigError naming ``option``."""
    match = _PERCENT.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{text!r} is not a percentage", key=option, hint="for example 5%")
    value = float(match["number"])
    if value > 100:
        raise ConfigError(f"{text} is more than 100%", key=option, hint="from 0% to 100%")
    return value


def netem_request(delay: str | None, jitter: str | None, loss: str | None) -> Netem:
    """The netem of ``lab netem``'s options, checked; ConfigError naming the option."""
    if delay is None and loss is None:
        raise ConfigError("nothing to do", key="--delay", hint="give --delay, --loss or both")
    delay_ms = parse_duration_ms(delay, "--delay") if delay is not None else 0.0
    jitter_ms = parse_duration_ms(jitter, "--jitter") if jitter is not None else 0.0
    if jitter_ms and not delay_ms:
        raise ConfigError("jitter needs a delay", key="--jitter", hint="add --delay")
    if jitter_ms > delay_ms:
        raise ConfigError(
            f"{jitter} is more than the delay ({_ms(delay_ms)})",
            key="--jitter",
            hint="netem would reorder packets and etcd's timings mean nothing; keep it below",
        )
    loss_pct = parse_percent(loss, "--loss") if loss is not None else 0.0
    return Netem(delay_ms, jitter_ms, loss_pct)


def check_nodes(known: Sequence[str], names: Iterable[str], option: str) -> None:
    """ConfigError naming ``option`` and the first unknown node."""
    for name in names:
        if name not in known:
            raise ConfigError(
                f"no node named {name!r}", key=option, hint=f"this lab has: {', '.join(known)}"
            )


def quorum_lost(members: Sequence[str], faults: Faults) -> bool:
    """True when no majority of ``members`` can all reach each other under ``faults``:
    etcd then cannot elect a leader or commit a write until the partition heals."""
    if not members:
        return False
    majority = len(members) // 2 + 1
    for group in itertools.combinations(members, majority):
        if not any(faults.cut(a, b) for a, b in itertools.combinations(group, 2)):
            return False
    return True


# --- what the host runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A running node's bridge port: its tap device now and its (fixed) MAC."""

    tap: str
    mac: str


def table_name(lab: str) -> str:
    """The lab's nftables table (in the ``bridge`` family)."""
    return f"lab-{check_lab_name(lab)}"


def ifb_name(lab: str, node: str) -> str:
    """The IFB device carrying ``node``'s outgoing traffic through netem (14 characters)."""
    key = f"{check_lab_name(lab)}/{check_node_name(node)}"
    return IFB_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]


def _from(port: Port) -> str:
    return f'iifname "{port.tap}" ether saddr {port.mac}'


def _to(port: Port) -> str:
    return f'oifname "{port.tap}" ether daddr {port.mac}'


def partition_rules(faults: Faults, ports: Mapping[str, Port]) -> dict[str, list[str]]:
    """The rules per bridge hook (``forward``: guest to guest; ``input``: guest to the
    host; ``output``: host to guest) for the nodes in ``ports``; a node not running
    has no port and no rule (its faults are applied again when it is)."""
    hooks: dict[str, list[str]] = {"forward": [], "input": [], "output": []}
    for node in sorted(faults.isolated):
        port = ports.get(node)
        if port is None:
            continue
        hooks["forward"] += [f"{_from(port)} drop", f"{_to(port)} drop"]
        hooks["input"].append(f"{_from(port)} drop")
        hooks["output"].append(f"{_to(port)} drop")
    for a, b in sorted(faults.pairs):
        if a in ports and b in ports:
            hooks["forward"] += [
                f"{_from(ports[a])} {_to(ports[b])} drop",
                f"{_from(ports[b])} {_to(ports[a])} drop",
            ]
    return hooks


def render_ruleset(lab: str, faults: Faults, ports: Mapping[str, Port]) -> str:
    """An ``nft -f`` script that makes the lab's table hold exactly ``faults``' rules
    (one transaction: the table is created if missing, deleted, and made again);
    with no partition, it only removes the table."""
    table = table_name(lab)
    lines = [f"table bridge {table} {{}}", f"delete table bridge {table}"]
    hooks = partition_rules(faults, ports)
    if any(hooks.values()):
        lines.append(f"table bridge {table} {{")
        for hook, rules in hooks.items():
            lines.append(f"  chain {hook} {{")
            lines.append(f"    type filter hook {hook} priority {CHAIN_PRIORITY}; policy accept;")
            lines += [f"    {rule}" for rule in rules]
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def netem_args(netem: Netem) -> list[str]:
    """netem's own arguments for ``netem``."""
    args = []
    if netem.delay_ms:
        args += ["delay", _ms(netem.delay_ms)]
        if netem.jitter_ms:
            args.append(_ms(netem.jitter_ms))
    if netem.loss_pct:
        args += ["loss", f"{netem.loss_pct:g}%"]
    return args


def netem_commands(port: Port, ifb: str, netem: Netem) -> list[list[str]]:
    """The commands that put ``netem`` on the traffic leaving the node at ``port``.

    The tap's egress is traffic *to* the guest; what the guest sends arrives on the
    tap's ingress, where no qdisc can delay it, so it is redirected to ``ifb`` and
    delayed on the IFB's egress. This is what ``tc qdisc add dev eth0 root netem``
    in the guest does, from where the guest cannot undo it. The netem qdisc comes
    first: a kernel without netem then fails before the tap is touched.
    """
    return [
        ["ip", "link", "add", ifb, "type", "ifb"],
        ["ip", "link", "set", ifb, "up"],
        ["tc", "qdisc", "replace", "dev", ifb, "root", "netem", *netem_args(netem)],
        ["tc", "qdisc", "replace", "dev", port.tap, "handle", "ffff:", "ingress"],
        [
            "tc", "filter", "replace", "dev", port.tap, "parent", "ffff:", "protocol", "all",
            "prio", "1", "u32", "match", "u32", "0", "0",
            "action", "mirred", "egress", "redirect", "dev", ifb,
        ],
    ]  # fmt: skip


def guest_netem_command(netem: Netem) -> list[str]:
    """The command, run in the guest, that puts ``netem`` on what it sends on its lab
    link (replacing any root qdisc there)."""
    return ["sudo", "tc", "qdisc", "replace", "dev", GUEST_LINK, "root", "netem",
            *netem_args(netem)]  # fmt: skip


def guest_netem_removal() -> list[str]:
    """The command, run in the guest, that takes netem off its lab link again (the
    kernel's default qdisc comes back); it fails where there is none."""
    return ["sudo", "tc", "qdisc", "del", "dev", GUEST_LINK, "root"]


def netem_removal(port: Port | None, ifb: str) -> list[list[str]]:
    """The commands that take netem off a node (each may find nothing to remove)."""
    commands = []
    if port is not None:
        commands.append(["tc", "qdisc", "del", "dev", port.tap, "handle", "ffff:", "ingress"])
    commands.append(["ip", "link", "del", ifb])
    return commands

"""``lab partition``, ``lab heal``, ``lab netem`` and the etcd member drills
(``lab kill --leader``, ``--quorum``).

The faults are recorded in ``.lab/faults.json`` (see :mod:`provisioner.faults.plan`)
and applied on the host with nftables and tc. Each command that changes something
on the host re-reads libvirt's tap device of every running node, so faults follow a
domain that was restarted (it gets a new tap). A full ``lab heal`` and ``lab
destroy`` find the lab's table and IFB devices by name, with or without the record.

Netem goes in the guest instead (tc over the lab's SSH) when the host's kernel
cannot carry it (no IFB device or no netem qdisc, tried once per command) or when
asked to; the record says which way each node's netem went, and ``lab heal`` takes
it off the same way.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from provisioner import nodes as node_access
from provisioner.config import LabConfig
from provisioner.errors import ConfigError, HostError, LabError, NodeError, RemoteError, WaitTimeout
from provisioner.faults import guest as guest_net
from provisioner.faults import host as host_net
from provisioner.faults.plan import (
    Faults,
    Lever,
    Netem,
    Port,
    check_nodes,
    faults_from_json,
    faults_to_json,
    guest_netem,
    healed,
    host_side,
    partitioned,
    quorum_lost,
    with_netem,
)
from provisioner.hypervisor.naming import bridge_name, network_name
from provisioner.lifecycle.backends import Backends, default_backends
from provisioner.locks import file_lock
from provisioner.parsers import leader_name
from provisioner.remote.local import LocalRunner
from provisioner.remote.runner import Runner
from provisioner.state import atomic_write, load_state

if TYPE_CHECKING:
    from provisioner.hypervisor.libvirt import LibvirtHost

FAULTS_FILE = "faults.json"
FAULTS_LOCK = "faults.lock"
TOOLS = ("nft", "tc", "ip")


@dataclass(frozen=True)
class FaultResult:
    """The lab's faults after a command, the nodes whose faults wait for them to run,
    the nodes whose netem in the guest could not be taken off (not reached over SSH),
    and why the host could not carry netem when the guest got it instead."""

    faults: Faults
    not_running: tuple[str, ...]
    unreached: tuple[str, ...] = ()
    host_cannot: str | None = None


# --- the record -------------------------------------------------------------------------


def load_faults(config: LabConfig) -> Faults:
    path = config.state_dir / FAULTS_FILE
    try:
        return faults_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return Faults()
    except (ValueError, TypeError, AttributeError) as exc:
        raise LabError(
            f"{path}: the record of network faults is unreadable ({exc})",
            hint="`lab heal` with no node removes every fault and the record",
        ) from exc


def save_faults(config: LabConfig, faults: Faults) -> None:
    path = config.state_dir / FAULTS_FILE
    if faults.empty:
        path.unlink(missing_ok=True)
        return
    atomic_write(path, (json.dumps(faults_to_json(faults), indent=2) + "\n").encode())


# --- the host ----------------------------------------------------------------------------


def host_runner() -> Runner:
    return LocalRunner(name="host")


def check_host(config: LabConfig) -> None:
    """HostError unless this host runs the lab's guests and has nft, tc and ip."""
    from provisioner.hypervisor.libvirt import is_local

    if not is_local(config.libvirt_uri):
        raise HostError(
            f"the lab runs on {config.libvirt_uri}: its network faults need that host's bridge",
            hint="run lab on the hypervisor's host",
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise HostError(
            f"{', '.join(missing)} not found",
            hint="install nftables and iproute2 (scripts/install.sh does)",
        )


def lab_ports(config: LabConfig, host: LibvirtHost) -> dict[str, Port]:
    """Every running node's tap device on the lab network now, with its MAC."""
    ports = {}
    network, bridge = network_name(config.name), bridge_name(config.name)
    for node in config.nodes:
        try:
            tap = host.interface_device(
                node_access.domain_of(config, node), network, bridge, node.mac
            )
        except LabError:
            tap = None  # no such domain (yet): no port
        if tap is not None:
            ports[node.name] = Port(tap=tap, mac=node.mac)
    return ports


def _change(
    config: LabConfig,
    change: Callable[[Faults], Faults],
    backends: Backends | None,
    runner: Runner | None,
    renew: Sequence[str] = (),
) -> FaultResult:
    """Apply ``change`` to the recorded faults and make the host and the guests match
    the result. The host is left alone (and need not be able to) while neither the
    faults before nor after have anything on it: netem in the guests only. Guest
    netem is set only where it changes, and on the nodes in ``renew`` (a restarted
    node lost its own)."""
    backends = backends or default_backends(config.libvirt_uri)
    with file_lock(config.state_dir / FAULTS_LOCK, f"network faults of lab {config.name}"):
        before = load_faults(config)
        after = change(before)  # a refused request fails here, before the host is touched
        on_host = not (host_side(before).empty and host_side(after).empty)
        ports: dict[str, Port] = {}
        if on_host:
            check_host(config)
            with backends.open_host() as host:
                ports = lab_ports(config, host)
        apply = _Apply(config, backends, runner or host_runner(), ports, on_host, frozenset(renew))
        save_faults(config, _union(before, after))  # an interrupted apply is still undone
        try:
            unreached = apply(before, after)
        except LabError:
            with contextlib.suppress(LabError):  # back to what was there, as far as it goes
                apply(after, before)
            save_faults(config, before)
            raise
        save_faults(config, after)
    touched = host_side(after).nodes()
    waiting = tuple(n.name for n in config.nodes if n.name in touched and n.name not in ports)
    return FaultResult(after, waiting, unreached)


@dataclass(frozen=True)
class _Apply:
    """Takes the lab from one :class:`Faults` to another: partitions and the host's
    netem through the host's runner, the guests' netem over SSH."""

    config: LabConfig
    backends: Backends
    runner: Runner  # the host's
    ports: dict[str, Port]
    on_host: bool
    renew: frozenset[str] = frozenset()  # guest netem set again even if recorded the same

    def __call__(self, before: Faults, after: Faults) -> tuple[str, ...]:
        """The nodes whose guest netem could not be reached to be taken off."""
        if self.on_host:  # first: a partition healed lets SSH reach the node below
            self._host(host_side(before), host_side(after))
        return self._guests(guest_netem(before), guest_netem(after))

    def _host(self, before: Faults, after: Faults) -> None:
        host_net.apply_partitions(self.runner, self.config.name, after, self.ports)
        touched = sorted(before.netem.keys() | after.netem.keys())
        host_net.apply_netem(self.runner, self.config.name, after, self.ports, touched)

    def _guests(self, before: dict[str, Netem], after: dict[str, Netem]) -> tuple[str, ...]:
        unreached = []
        for node in sorted(before.keys() | after.keys()):
            setting = after.get(node)
            if setting == before.get(node) and node not in self.renew:
                continue  # the guest has it already: no login (it may be cut off)
            if setting is not None:
                with self._guest(node) as runner:
                    guest_net.set_netem(runner, setting)  # replaces what was there
            elif not self.clear_guest(node):
                unreached.append(node)
        return tuple(unreached)

    def _runner(self, node: str) -> Runner:
        state = load_state(self.config.state_dir)
        return self.backends.runner(self.config, state, self.config.node(node))

    @contextlib.contextmanager
    def _guest(self, node: str) -> Iterator[Runner]:
        runner = self._runner(node)
        try:
            yield runner
        finally:
            runner.close()

    def clear_guest(self, node: str) -> bool:
        """Netem off the node's lab link; False when the node could not be reached
        (a node that is down has none left: a boot starts without it). A tc that
        fails otherwise raises."""
        try:
            runner = self._runner(node)
        except NodeError:  # never booted under lab: no pinned host key
            return False
        try:
            guest_net.clear_netem(runner)
        except (RemoteError, WaitTimeout):
            return False
        finally:
            runner.close()
        return True


def _union(a: Faults, b: Faults) -> Faults:
    return Faults(a.isolated | b.isolated, a.pairs | b.pairs, {**a.netem, **b.netem})


# --- the verbs ---------------------------------------------------------------------------


def partition(
    config: LabConfig,
    names: Sequence[str],
    peers: Sequence[str] = (),
    *,
    allow_quorum_loss: bool = False,
    backends: Backends | None = None,
    runner: Runner | None = None,
) -> FaultResult:
    """Cut ``names`` off the lab network (the other nodes and the host), or only from
    ``peers``. Refused before anything changes when no majority of etcd's members
    could still reach each other, unless ``allow_quorum_loss``."""
    known = [node.name for node in config.nodes]
    if not names:
        raise ConfigError("name at least one node", key="NODE")
    check_nodes(known, names, "NODE")
    check_nodes(known, peers, "--from")
    both = sorted(set(names) & set(peers))
    if both:
        raise ConfigError(f"{both[0]} cannot be cut off from itself", key="--from")
    members = [node.name for node in config.members]

    def change(faults: Faults) -> Faults:
        after = partitioned(faults, names, peers)
        if quorum_lost(members, after) and not allow_quorum_loss:
            majority = len(members) // 2 + 1
            raise ConfigError(
                f"this leaves no {majority} of etcd's {len(members)} members "
                f"({', '.join(members)}) able to reach each other: etcd could elect no "
                "leader and commit no write until the partition heals",
                key="NODE",
                hint="to drill exactly that, add --allow-quorum-loss; `lab heal` ends it",
            )
        return after

    return _change(config, change, backends, runner)


def heal(
    config: LabConfig,
    names: Sequence[str] = (),
    *,
    backends: Backends | None = None,
    runner: Runner | None = None,
) -> FaultResult:
    """Take every fault off ``names`` (none named: off the whole lab, found by name)."""
    check_nodes([node.name for node in config.nodes], names, "NODE")
    if names:
        return _change(config, lambda faults: healed(faults, names), backends, runner)
    backends = backends or default_backends(config.libvirt_uri)
    runner = runner or host_runner()
    with file_lock(config.state_dir / FAULTS_LOCK, f"network faults of lab {config.name}"):
        recorded: Faults | None = None
        with contextlib.suppress(LabError):  # unreadable: the host's part is found by name
            recorded = load_faults(config)
        try:
            check_host(config)
        except HostError:
            if recorded is None or not host_side(recorded).empty:
                raise
        else:
            with backends.open_host() as host:
                ports = lab_ports(config, host)
            host_net.clear_all(runner, config.name, _node_names(config), ports)
        in_guests = Faults(netem=guest_netem(recorded or Faults()))
        save_faults(config, in_guests)  # the host's part is gone
        unreached = _Apply(config, backends, runner, {}, on_host=False)(in_guests, Faults())
        save_faults(config, Faults())
    return FaultResult(Faults(), (), unreached)


def netem(
    config: LabConfig,
    name: str,
    setting: Netem,
    *,
    on: Lever | None = None,
    backends: Backends | None = None,
    runner: Runner | None = None,
) -> FaultResult:
    """Delay, jitter and loss on the traffic ``name`` sends on its lab link: on the
    host, in the guest, or (``on`` None) on the host when it can, else in the guest."""
    check_nodes([node.name for node in config.nodes], [name], "NODE")
    lever, host_cannot = choose_lever(config, on, runner)
    chosen = replace(setting, on=lever)

    def change(faults: Faults) -> Faults:
        return with_netem(faults, name, chosen)

    result = _change(config, change, backends, runner, renew=[name])
    return replace(result, host_cannot=host_cannot)


def host_netem_unavailable(config: LabConfig, runner: Runner | None = None) -> str | None:
    """Why the host cannot carry the lab's netem (tried once, see
    :func:`provisioner.faults.host.netem_unavailable`), or None."""
    try:
        check_host(config)
    except HostError as exc:
        return exc.message
    return host_net.netem_unavailable(runner or host_runner())


def choose_lever(
    config: LabConfig, on: Lever | None, runner: Runner | None = None
) -> tuple[Lever, str | None]:
    """Where netem goes: ``on`` when given (the host's own errors say when it cannot),
    else the host when it can carry it, else the guest; with why the host cannot
    when the guest got it for that reason."""
    if on is not None:
        return on, None
    reason = host_netem_unavailable(config, runner)
    return (Lever.HOST, None) if reason is None else (Lever.GUEST, reason)


def clear_for_destroy(config: LabConfig, host: LibvirtHost) -> None:
    """Best effort, for ``lab destroy``: the lab's table, IFB devices and record go.
    Nothing to do where the host cannot have any (another host's libvirt, no nft);
    netem in a guest goes with the guest."""
    try:
        check_host(config)
    except HostError:
        (config.state_dir / FAULTS_FILE).unlink(missing_ok=True)
        return
    runner, names = host_runner(), _node_names(config)
    if host_net.leftovers(runner, config.name, names):
        host_net.clear_all(runner, config.name, names, lab_ports(config, host))
    (config.state_dir / FAULTS_FILE).unlink(missing_ok=True)


def _node_names(config: LabConfig) -> list[str]:
    """The lab's nodes and any the record names (a lab resized since)."""
    recorded: set[str] = set()
    with contextlib.suppress(LabError):
        recorded = load_faults(config).nodes()
    return sorted({node.name for node in config.nodes} | recorded)


# --- etcd's leader and quorum -----------------------------------------------------------


def etcd_leader(config: LabConfig, backends: Backends | None = None) -> str:
    """The member that leads etcd now: asked from the host over the lab network (etcd's
    JSON gateway), else with etcdctl on the first member that answers over SSH."""
    from provisioner import facts
    from provisioner.etcdhttp import EtcdHttp
    from provisioner.readiness import HOST_PROBE_TIMEOUT, member_endpoints
    from provisioner.state import load_state

    if not config.members:
        raise LabError("this lab has no etcd members")
    try:
        leader = EtcdHttp(member_endpoints(config), timeout=HOST_PROBE_TIMEOUT).leader()
    except RemoteError:
        leader = None
    if leader is not None:
        return leader
    backends = backends or default_backends(config.libvirt_uri)
    state = load_state(config.state_dir)
    errors = []
    for member in config.members:
        try:
            runner = backends.runner(config, state, member)
        except LabError as exc:
            errors.append(str(exc))
            continue
        status = facts.endpoint_status(member_endpoints(config))
        try:
            # etcdctl exits 1 when a member does not answer; the others' answers count
            statuses = status.parse(runner.run(status.argv, timeout=status.timeout))
            members = facts.member_list(member_endpoints(config)).run(runner)
        except LabError as exc:
            errors.append(str(exc))
            continue
        finally:
            runner.close()
        ids = {m.name: m.member_id for m in members if m.name}
        leaders = [(s.raft_term, s.leader_id) for s in statuses]
        found = leader_name(leaders, ids)
        if found is not None:
            return found
        errors.append(f"{member.name}: no member reports a leader")
    raise LabError(
        "etcd has no leader now: " + "; ".join(errors),
        hint="`lab status` shows the members; a cluster without quorum elects none",
    )


def quorum_victims(members: Sequence[str], leader: str | None) -> list[str]:
    """A majority of ``members`` to kill: the leader first (when known), then the
    members in the lab's order."""
    majority = len(members) // 2 + 1
    first = [m for m in members if m == leader]
    ordered = first + [m for m in members if m != leader]
    return ordered[:majority]

"""Driving a running lab: status, commands on nodes, etcdctl/fleetctl/systemctl, verify."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioner import facts
from provisioner import nodes as node_access
from provisioner.config import LabConfig, NodeSpec
from provisioner.errors import LabError, NodeError
from provisioner.readiness import member_endpoints
from provisioner.remote.fanout import Outcome, run_all
from provisioner.remote.runner import CommandResult, quote_argv
from provisioner.remote.ssh import SSHRunner
from provisioner.state import LabState, load_state

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")
UPLOAD_DIR = "/tmp/lab-units"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ip: str
    role: str
    state: str  # libvirt domain state: running, shutoff, ... or "not created"
    machine_id: str | None
    metadata: dict[str, str]
    etcd_member: bool
    etcd_healthy: bool | None  # None for workers, and for a member no one could tell about
    etcd_leader: bool
    fleet_listed: bool
    failed_units: list[str] = field(default_factory=list)
    flannel_subnet: str | None = None  # the node's overlay lease; None if it holds none


@contextlib.contextmanager
def runners(config: LabConfig, names: Sequence[str] = ()) -> Iterator[dict[str, SSHRunner]]:
    state = load_state(config.state_dir)
    made = {
        node.name: node_access.runner(config, state, node)
        for node in node_access.resolve_nodes(config, names)
    }
    try:
        yield made
    finally:
        for runner in made.values():
            runner.close()


def domain_states(config: LabConfig) -> dict[str, str]:
    from provisioner.hypervisor.libvirt import LibvirtHost

    with LibvirtHost.open(config.libvirt_uri) as host:
        found = set(host.lab_objects(config.name).domains)
        states = {}
        for node in config.nodes:
            domain = node_access.domain_of(config, node)
            states[node.name] = (
                host.state(domain).name.lower() if domain in found else "not created"
            )
        return states


def status(config: LabConfig) -> list[NodeStatus]:
    """Every node's domain state, address, etcd role and health, fleet view, failed units."""
    state = load_state(config.state_dir)
    domains = domain_states(config)
    running = [
        n for n in config.nodes if domains[n.name] == "running" and n.name in state.host_keys
    ]
    outcomes: dict[str, Outcome] = {}
    etcd_health: dict[str, bool] = {}
    leader_ip: str | None = None
    machines: dict[str, dict[str, str]] = {}
    subnets: dict[str, str] = {}
    if running:
        with runners(config, [n.name for n in running]) as made:
            failed_units = facts.FAILED_UNITS
            outcomes = run_all(
                list(made.values()), list(failed_units.argv), timeout=failed_units.timeout
            )
            probe = _healthy_member(config, made, domains)
            if probe is not None:
                etcd_health, leader_ip = _etcd_view(config, probe)
                fleet = facts.FLEET_MACHINES
                listed = probe.run(fleet.argv, timeout=fleet.timeout)
                if listed.succeeded:
                    machines = {m.machine_id: m.metadata for m in fleet.parse(listed)}
                if config.flannel.enabled:
                    subnets = _flannel_subnets(config, probe)
    result = []
    for node in config.nodes:
        machine_id = state.machine_ids.get(node.name)
        failed = _failed_units(node.name, outcomes.get(node.name))
        result.append(
            NodeStatus(
                name=node.name,
                ip=node.ip,
                role=node.role,
                state=domains[node.name],
                machine_id=machine_id,
                metadata=machines.get(machine_id or "", dict(node.metadata)),
                etcd_member=node.is_member,
                etcd_healthy=etcd_health.get(node.ip) if node.is_member else None,
                etcd_leader=leader_ip == node.ip,
                fleet_listed=(machine_id or "") in machines,
                failed_units=failed,
                flannel_subnet=subnets.get(node.ip),
            )
        )
    return result


def _flannel_subnets(config: LabConfig, probe: SSHRunner) -> dict[str, str]:
    """Node address -> its overlay subnet, as flanneld leased them (empty if unreadable)."""
    leases = facts.flannel_leases(member_endpoints(config))
    listed = probe.run(leases.argv, timeout=leases.timeout)
    with contextlib.suppress(LabError):
        return {lease.public_ip: lease.subnet for lease in leases.read(probe.name, listed)}
    return {}


def _failed_units(node: str, outcome: Outcome | None) -> list[str]:
    """The units a node lists as failed; none if it could not list them."""
    if isinstance(outcome, CommandResult):
        with contextlib.suppress(LabError):
            return [unit.unit for unit in facts.FAILED_UNITS.read(node, outcome)]
    return []


def status_json(config: LabConfig, statuses: Sequence[NodeStatus]) -> dict[str, Any]:
    return {
        "lab": config.name,
        "directory": str(config.directory),
        "subnet": config.subnet,
        "nodes": [asdict(s) for s in statuses],
    }


def _healthy_member(
    config: LabConfig, made: dict[str, SSHRunner], domains: dict[str, str]
) -> SSHRunner | None:
    """The first running node that can talk to etcd (members first)."""
    ordered = sorted(config.nodes, key=lambda n: (not n.is_member, n.index))
    for node in ordered:
        if node.name in made and domains[node.name] == "running":
            with contextlib.suppress(LabError):
                if made[node.name].run(["true"], timeout=15).succeeded:
                    return made[node.name]
    return None


def _etcd_view(config: LabConfig, runner: SSHRunner) -> tuple[dict[str, bool], str | None]:
    endpoints = member_endpoints(config)
    health = facts.endpoint_health(endpoints)
    answer = runner.run(health.argv, timeout=health.timeout)
    healthy = {}
    with contextlib.suppress(LabError):
        for check in health.parse(answer):
            healthy[_host_of(check.endpoint)] = check.healthy
    leader_ip = None
    status = facts.endpoint_status(endpoints)
    listing = runner.run(status.argv, timeout=status.timeout)
    with contextlib.suppress(LabError):
        # a member that does not answer makes etcdctl exit 1; the others still tell the leader
        for item in status.parse(listing):
            if item.is_leader:
                leader_ip = _host_of(item.endpoint)
    return healthy, leader_ip


def _host_of(url: str) -> str:
    return url.split("//", 1)[-1].rsplit(":", 1)[0]


# --- commands ---------------------------------------------------------------


def exec_on(config: LabConfig, names: Sequence[str], argv: Sequence[str]) -> dict[str, Outcome]:
    """``argv`` on each node, every argument one argument (quoted for the remote shell)."""
    if not argv:
        raise LabError("no command given", hint="lab exec core-01 -- uptime")
    with runners(config, names) as made:
        return run_all(list(made.values()), list(argv), timeout=600)


def pick_member(config: LabConfig) -> NodeSpec:
    """A running etcd member that answers, for etcdctl and fleetctl."""
    state = load_state(config.state_dir)
    domains = domain_states(config)
    with runners(config, [n.name for n in config.nodes if n.name in state.host_keys]) as made:
        chosen = _healthy_member(config, made, domains)
        if chosen is None:
            raise LabError("no node of the lab answers", hint="`lab status` shows what runs")
        return config.node(chosen.name)


def run_tool(
    config: LabConfig,
    node: NodeSpec,
    argv: Sequence[str],
    *,
    uploads: Sequence[Path] = (),
) -> CommandResult:
    with runners(config, [node.name]) as made:
        runner = made[node.name]
        if uploads:
            runner.run(["mkdir", "-p", UPLOAD_DIR], timeout=30)
            for path in uploads:
                runner.upload(path, f"{UPLOAD_DIR}/{path.name}")
        return runner.run(list(argv), timeout=900)


def etcdctl(config: LabConfig, args: Sequence[str]) -> CommandResult:
    """etcdctl on a healthy member, against every member, speaking lab.yaml's etcdctl_api."""
    node = pick_member(config)
    return run_tool(config, node, etcdctl_argv(config, args))


def etcdctl_argv(config: LabConfig, args: Sequence[str]) -> list[str]:
    """``lab etcdctl ARGS`` on a guest: the lab's ETCDCTL_API, every member's endpoint."""
    endpoints = f"--endpoints={','.join(member_endpoints(config))}"
    return ["env", f"ETCDCTL_API={config.etcdctl_api}", "etcdctl", endpoints, *args]


def fleetctl_args(args: Sequence[str]) -> tuple[list[str], list[Path]]:
    """Local unit files named on the command line are uploaded; their remote paths replace them."""
    out, uploads = [], []
    for arg in args:
        path = Path(arg)
        if arg.endswith(UNIT_SUFFIXES) and ("/" in arg or path.exists()) and path.is_file():
            uploads.append(path.resolve())
            out.append(f"{UPLOAD_DIR}/{path.name}")
        else:
            out.append(arg)
    return out, uploads


def fleetctl_argv(config: LabConfig, args: Sequence[str]) -> list[str]:
    """``lab fleetctl``: the unit files named in ``args`` uploaded to a healthy node,
    then the OpenSSH command that runs fleetctl there as ``lab ssh`` does, with an
    agent holding the lab's key forwarded (fleetctl status/journal/ssh of a unit on
    another node log in there with it). Each argument stays one argument."""
    node = pick_member(config)
    remote_args, uploads = fleetctl_args(args)
    if uploads:
        with runners(config, [node.name]) as made:
            runner = made[node.name]
            runner.run(["mkdir", "-p", UPLOAD_DIR], timeout=30)
            for path in uploads:
                runner.upload(path, f"{UPLOAD_DIR}/{path.name}")
    return ssh_argv(config, node.name, [quote_argv(["fleetctl", *remote_args])])


def systemctl(config: LabConfig, node: str, args: Sequence[str]) -> CommandResult:
    return run_tool(config, config.node(node), ["sudo", "systemctl", *args])


def ssh_argv(config: LabConfig, node: str, command: Sequence[str]) -> list[str]:
    """OpenSSH with the lab's ssh_config (pinned known_hosts, the lab's key), forwarding
    an agent that holds the lab's key; ``command`` is run as ``ssh host CMD`` runs it."""
    from provisioner.remote.login import login_argv

    config.node(node)
    node_access.require_known_hosts(config)
    path = write_ssh_config(config)
    return login_argv(path, node, command, node_access.key_path(config))


def write_ssh_config(config: LabConfig) -> Path:
    from provisioner.state import atomic_write

    path = config.state_dir / node_access.SSH_CONFIG
    atomic_write(path, node_access.ssh_config_text(config).encode(), mode=0o600)
    return path


# --- verify -----------------------------------------------------------------


def verify(
    config: LabConfig,
    *,
    junit: Path | None,
    extra: Sequence[Path],
    only: Sequence[str] | None = None,
    timeout: float = 900.0,
) -> Any:
    from provisioner.checks.expectations import expectations_for_lab, render_expectations
    from provisioner.checks.runner import run_verify
    from provisioner.remote.sshconfig import HostSpec
    from provisioner.state import atomic_write

    state: LabState = load_state(config.state_dir)
    missing = [n.name for n in config.nodes if n.name not in state.host_keys]
    if missing:
        raise NodeError(", ".join(missing), "has no pinned host key", hint="run `lab up` first")
    node_access.require_known_hosts(config)
    expectations = config.state_dir / "expectations.json"
    atomic_write(expectations, render_expectations(expectations_for_lab(config)).encode())
    ssh_config = write_ssh_config(config)
    hosts = [HostSpec(node.name, node.ip) for node in config.nodes]
    return run_verify(hosts, expectations, ssh_config, junit, list(extra), timeout, only=only)

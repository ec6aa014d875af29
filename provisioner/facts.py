"""The catalogue of what the host learns from a guest by running a command on it.

Each :class:`Fact` is data: the argument list (JSON output where the tool has
it), the exit codes that still carry an answer, the parser (from
:mod:`provisioner.parsers`) and one timeout. ``lab up``'s waits
(:mod:`provisioner.readiness`), ``lab status`` (:mod:`provisioner.operate`) and
``lab verify``'s checks (:mod:`provisioner.checks`) all take their commands from
here, so each is spelled once. What the host reads over the lab network instead
(etcd's ``/health``, the member list, fleet's registry), for ``lab up`` and the
benchmarks alike, is in :mod:`provisioner.etcdhttp`.

``read`` checks the exit code, then parses; ``parse`` alone serves a best-effort
view such as ``lab status``, which shows what answered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from provisioner.errors import RemoteError
from provisioner.parsers import (
    FLANNEL_SUBNETS,
    EndpointHealth,
    EndpointStatus,
    EtcdMember,
    FailedUnit,
    FlannelLease,
    FleetMachine,
    SystemState,
    parse_endpoint_health,
    parse_endpoint_status,
    parse_flannel_leases,
    parse_is_system_running,
    parse_list_machines,
    parse_member_list,
    parse_subnet_env,
    parse_systemctl_failed,
    parse_v2_action,
)
from provisioner.remote.runner import CommandResult, Runner, describe_failure

T = TypeVar("T")

TIMEOUT = 60.0  # seconds any fact's command may take on a guest busy under emulation
ETCDCTL = ("env", "ETCDCTL_API=3", "etcdctl")
# etcdctl's own deadlines, inside TIMEOUT: a commit under emulation can stall for seconds.
ETCDCTL_DEADLINES = ("--command-timeout=10s", "--dial-timeout=5s")
ANY_EXIT = None  # the command's output is the answer whatever its exit code
DOCKER_SOCKET = "/run/docker.sock"  # docker.socket listens here; a connection starts docker


@dataclass(frozen=True)
class Fact(Generic[T]):
    """One thing a guest tells: run ``argv``, then ``parse`` what it printed."""

    what: str  # for messages
    argv: tuple[str, ...]
    parse: Callable[[CommandResult], T]
    ok: tuple[int, ...] | None = (0,)  # exit codes that still carry an answer; None: any
    timeout: float = TIMEOUT

    def read(self, host: str, result: CommandResult) -> T:
        """The answer in ``result``; RemoteError naming ``host`` if the command failed."""
        if self.ok is not None and result.rc not in self.ok:
            raise RemoteError(describe_failure(host, self.argv, result))
        return self.parse(result)

    def run(self, runner: Runner) -> T:
        """Run the command through ``runner`` and read its answer."""
        return self.read(runner.name, runner.run(self.argv, timeout=self.timeout))


def _stdout(parse: Callable[[str], T]) -> Callable[[CommandResult], T]:
    def read(result: CommandResult) -> T:
        return parse(result.stdout)

    return read


def _text(result: CommandResult) -> str:
    return result.stdout.strip()


# --- systemd and the machine ----------------------------------------------------------

MACHINE_ID: Fact[str] = Fact("machine-id", ("cat", "/etc/machine-id"), _text)

# The one failed-units listing: systemd 252 prints the table as JSON.
FAILED_UNITS: Fact[tuple[FailedUnit, ...]] = Fact(
    "failed units",
    ("systemctl", "list-units", "--state=failed", "--no-legend", "--plain", "--output=json"),
    _stdout(parse_systemctl_failed),
)


def system_state(wait: float | None = None) -> Fact[SystemState]:
    """``systemctl is-system-running`` (it exits non-zero unless running; the word is
    printed either way); with ``wait``, until boot has finished, for at most that long."""
    argv: tuple[str, ...] = ("systemctl", "is-system-running")
    if wait is None:
        return Fact("the system's state", argv, _stdout(parse_is_system_running), ANY_EXIT)
    return Fact(
        "the system's state once booted",
        ("timeout", str(int(wait)), *argv, "--wait"),
        _stdout(parse_is_system_running),
        ANY_EXIT,
        timeout=wait + 15,
    )


def unit_state(unit: str) -> Fact[str]:
    """What ``systemctl is-active`` says of ``unit`` (non-zero exit unless active)."""
    return Fact(f"the state of {unit}", ("systemctl", "is-active", unit), _text, ANY_EXIT)


DOCKER_SOCKET_LISTENS: Fact[bool] = Fact(
    "docker's socket", ("test", "-S", DOCKER_SOCKET), lambda result: result.rc == 0, ANY_EXIT
)


# --- etcd ------------------------------------------------------------------------------


def etcdctl(endpoints: Sequence[str], *args: str) -> tuple[str, ...]:
    """etcdctl (v3 API) with its deadlines, against ``endpoints`` (none: the node's own)."""
    where = (f"--endpoints={','.join(endpoints)}",) if endpoints else ()
    return (*ETCDCTL, *ETCDCTL_DEADLINES, *where, *args)


def _health(result: CommandResult) -> tuple[EndpointHealth, ...]:
    # The text form prints unhealthy endpoints on stderr; -w json prints all on stdout.
    return parse_endpoint_health(result.stdout or result.stderr)


def endpoint_health(
    endpoints: Sequence[str], *, cluster: bool = False
) -> Fact[tuple[EndpointHealth, ...]]:
    """Each endpoint's health (``--cluster``: every member's); etcdctl exits 1 when
    one is unhealthy but still reports every endpoint."""
    more = ("--cluster",) if cluster else ()
    return Fact(
        "etcd endpoint health",
        etcdctl(endpoints, "endpoint", "health", *more, "-w", "json"),
        _health,
        ok=(0, 1),
    )


def endpoint_status(
    endpoints: Sequence[str], *, cluster: bool = False
) -> Fact[tuple[EndpointStatus, ...]]:
    """Each endpoint's member, leader and term (``--cluster``: every member's). etcdctl
    exits 1 when an endpoint does not answer; ``parse`` still reads the others."""
    more = ("--cluster",) if cluster else ()
    return Fact(
        "etcd endpoint status",
        etcdctl(endpoints, "endpoint", "status", *more, "-w", "json"),
        _stdout(parse_endpoint_status),
    )


def member_list(endpoints: Sequence[str] = ()) -> Fact[tuple[EtcdMember, ...]]:
    return Fact(
        "etcd member list",
        etcdctl(endpoints, "member", "list", "-w", "json"),
        _stdout(parse_member_list),
    )


def member_remove(endpoints: Sequence[str], member_id: str) -> Fact[str]:
    """``etcdctl member remove`` of the member with the hex id ``member_id``."""
    return Fact(
        f"etcd member remove {member_id}", etcdctl(endpoints, "member", "remove", member_id), _text
    )


def member_add(endpoints: Sequence[str], name: str, peer_url: str) -> Fact[str]:
    """``etcdctl member add NAME --peer-urls=URL``: the member joins unstarted, and
    starts with ``initial-cluster-state existing``."""
    return Fact(
        f"etcd member add {name}",
        etcdctl(endpoints, "member", "add", name, f"--peer-urls={peer_url}"),
        _text,
    )


def etcd_value(endpoints: Sequence[str], key: str) -> Fact[str]:
    """The value of ``key`` (a linearizable read; empty if there is no such key)."""
    return Fact(f"etcd key {key}", etcdctl(endpoints, "get", "--print-value-only", key), _text)


def etcd_put(endpoints: Sequence[str], key: str, value: str) -> Fact[str]:
    """Put ``key``; the answer is etcdctl's ``OK``."""
    return Fact(f"etcd put {key}", etcdctl(endpoints, "put", key, value), _text)


def etcd_v2_read(url: str) -> Fact[str]:
    """A read of the v2 keyspace's root through ``url`` with ``curl`` (as the tutorials
    do); the answer's action, ``get``."""
    argv = ("curl", "-fsS", "--max-time", "10", f"{url}/v2/keys/")
    return Fact(f"etcd's v2 API at {url}", argv, _stdout(parse_v2_action))


# --- fleet -------------------------------------------------------------------------------

FLEET_MACHINES: Fact[tuple[FleetMachine, ...]] = Fact(
    "fleet machines",
    ("fleetctl", "list-machines", "--full", "--no-legend"),
    _stdout(parse_list_machines),
)


# --- flannel -------------------------------------------------------------------------------


def flannel_leases(endpoints: Sequence[str] = ()) -> Fact[tuple[FlannelLease, ...]]:
    """flanneld's subnet leases in etcd, one per node that holds one."""
    return Fact(
        "flannel leases",
        etcdctl(endpoints, "get", "--prefix", FLANNEL_SUBNETS, "-w", "json"),
        _stdout(parse_flannel_leases),
    )


FLANNEL_SUBNET_ENV: Fact[dict[str, str]] = Fact(
    "flannel's subnet.env", ("cat", "/run/flannel/subnet.env"), _stdout(parse_subnet_env)
)


def link_exists(device: str) -> Fact[bool]:
    return Fact(f"link {device}", ("ip", "link", "show", device), lambda r: r.rc == 0, ANY_EXIT)


def ping(source: str, target: str) -> Fact[bool]:
    """One ICMP echo from the address ``source`` to ``target`` answered within 3 s
    (busybox's ping, which needs root for its raw socket: the box has no iputils)."""
    argv = ("sudo", "busybox", "ping", "-c", "1", "-W", "3", "-I", source, target)
    return Fact(f"ping {target} from {source}", argv, lambda r: r.rc == 0, ANY_EXIT)


def route_via(subnet: str) -> Fact[str]:
    """The route the node has for ``subnet`` (``ip route show exact``; empty if none)."""
    return Fact(f"route to {subnet}", ("ip", "route", "show", "exact", subnet), _text)

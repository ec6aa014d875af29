"""Pure parsers for what the guests' tools print: etcdctl, fleetctl and systemctl.

Each ``parse_*`` takes a command's output and returns frozen dataclasses; output
it cannot understand raises :class:`RemoteError` naming the command and the line.
The formats are those of etcd 3.4's ``etcdctl`` (fixtures captured from the real
binary), fleet's ``fleetctl`` (tab-padded Go tabwriter columns) and systemd's
``systemctl``.

Longer than most modules on purpose: every guest tool's output format in one
place, one section per tool (etcd, fleet, systemd, flannel), each independent of
the others; a section that grows much further moves to a module of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from provisioner.errors import RemoteError

_EXCERPT_CHARS = 200
_KINDS = {
    int: "an integer",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}

# --- helpers ----------------------------------------------------------------


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _bad_output(command: str, problem: str, text: str = "") -> RemoteError:
    detail = f": {_excerpt(text)!r}" if text.strip() else ""
    return RemoteError(
        f"cannot parse the output of `{command}`: {problem}{detail}",
        hint="the guest's tool may be a different version than the lab expects",
    )


def _load_json(command: str, stdout: str) -> Any:
    if not stdout.strip():
        raise _bad_output(command, "it printed nothing")
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise _bad_output(command, f"not JSON ({exc})", stdout) from exc


def _dict_field(command: str, obj: Any, key: str, kind: type, default: Any = None) -> Any:
    """``obj[key]`` checked to be ``kind``; ``default`` if absent and a default is given."""
    if not isinstance(obj, dict):
        raise _bad_output(command, f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        if default is not None:
            return default
        raise _bad_output(command, f"missing {key!r}", json.dumps(obj))
    value = obj[key]
    # JSON true/false are ints to isinstance; keep the two apart.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad_output(command, f"{key!r} should be {_KINDS[kind]}", json.dumps(obj))
    return value


def _str_list(command: str, obj: Any, key: str) -> tuple[str, ...]:
    values = _dict_field(command, obj, key, list, default=[])
    if not all(isinstance(v, str) for v in values):
        raise _bad_output(command, f"{key!r} holds a non-string", json.dumps(obj))
    return tuple(values)


_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.Duration`` string (``1.5ms``, ``2m3.1s``, ``0s``)."""
    value = text.strip()
    if value in ("0", "0s"):
        return 0.0
    position = 0
    total = 0.0
    for part in _GO_DURATION_PART.finditer(value):
        if part.start() != position:
            break
        total += float(part[1]) * _GO_UNIT_SECONDS[part[2]]
        position = part.end()
    if position != len(value) or not value:
        raise ValueError(f"not a Go duration: {text!r}")
    return total


# --- etcdctl member list ------------------------------------------------------

MEMBER_LIST = "etcdctl member list"


@dataclass(frozen=True)
class EtcdMember:
    """One member of an etcd cluster, as ``etcdctl member list`` reports it."""

    member_id: int
    name: str  # empty until the member has started and published its name
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def started(self) -> bool:
        """etcdctl's own rule: a member without a name has not started yet."""
        return bool(self.name)

    @property
    def hex_id(self) -> str:
        """The ID as etcdctl's text and table outputs print it (``%x``)."""
        return f"{self.member_id:x}"


def parse_member_list(stdout: str) -> tuple[EtcdMember, ...]:
    """Members from ``etcdctl member list`` in ``-w json``, ``-w table`` or the default form.

    The text forms carry the status column; a row reading ``unstarted`` must have
    an empty name, as etcdctl derives the status from the name.
    """
    text = stdout.strip()
    if text.startswith("{"):
        return _member_list_json(stdout)
    if not text:
        raise _bad_output(MEMBER_LIST, "it printed nothing")
    rows: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("+"):
            continue  # blank or a table rule
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if cells and cells[0] == "ID":
                continue  # table header
        elif line.startswith("{"):
            continue  # a JSON log line etcdctl wrote to stderr, captured alongside
        else:
            cells = [cell.strip() for cell in line.split(", ")]
        rows.append(cells)
    return tuple(_member_from_row(cells) for cells in rows)


def _member_list_json(stdout: str) -> tuple[EtcdMember, ...]:
    command = f"{MEMBER_LIST} -w json"
    data = _load_json(command, stdout)
    members = []
    for raw in _dict_field(command, data, "members", list):
        members.append(
            EtcdMember(
                member_id=_dict_field(command, raw, "ID", int),
                name=_dict_field(command, raw, "name", str, default=""),
                peer_urls=_str_list(command, raw, "peerURLs"),
                client_urls=_str_list(command, raw, "clientURLs"),
                is_learner=_dict_field(command, raw, "isLearner", bool, default=False),
            )
        )
    return tuple(members)


def _member_from_row(cells: list[str]) -> EtcdMember:
    row = ", ".join(cells)
    if len(cells) != 6:
        raise _bad_output(MEMBER_LIST, f"expected 6 columns, got {len(cells)}", row)
    hex_id, status, name, peers, clients, learner = cells
    try:
        member_id = int(hex_id, 16)
    except ValueError:
        raise _bad_output(MEMBER_LIST, f"member ID {hex_id!r} is not hex", row) from None
    if status not in ("started", "unstarted") or (status == "started") != bool(name):
        raise _bad_output(MEMBER_LIST, f"status {status!r} does not fit name {name!r}", row)
    if learner not in ("true", "false"):
        raise _bad_output(MEMBER_LIST, f"learner flag {learner!r} is not true/false", row)
    return EtcdMember(
        member_id=member_id,
        name=name,
        peer_urls=tuple(url for url in peers.split(",") if url),
        client_urls=tuple(url for url in clients.split(",") if url),
        is_learner=learner == "true",
    )


# --- etcd over HTTP (the v3 JSON gateway, as the host reads the guests) -------


def parse_etcd_health(body: str) -> bool:
    """etcd's ``GET /health`` answer: ``{"health":"true"}`` when the member has a quorum."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and str(data.get("health")).lower() == "true"


def started_member_names(answer: Any) -> tuple[str, ...]:
    """Names of started members in a decoded ``POST /v3/cluster/member/list`` answer.

    A member that has been added but has not started yet has no name, as in
    ``etcdctl member list``; it is left out.
    """
    members = answer.get("members") if isinstance(answer, dict) else None
    if not isinstance(members, list):
        return ()
    return tuple(sorted(str(m["name"]) for m in members if isinstance(m, dict) and m.get("name")))


def member_ids_by_name(answer: Any) -> dict[str, int]:
    """Started members' IDs by name in a decoded ``POST /v3/cluster/member/list`` answer
    (the JSON gateway writes 64-bit IDs as strings)."""
    members = answer.get("members") if isinstance(answer, dict) else None
    found = {}
    for member in members if isinstance(members, list) else []:
        if isinstance(member, dict) and member.get("name") and member.get("ID") is not None:
            found[str(member["name"])] = int(member["ID"])
    return found


def status_leader(answer: Any) -> tuple[int, int]:
    """(raft term, leader ID) of a decoded ``POST /v3/maintenance/status`` answer; the
    leader is 0 while the member knows none."""
    if not isinstance(answer, dict):
        return (0, 0)
    return (int(answer.get("raftTerm") or 0), int(answer.get("leader") or 0))


def leader_name(statuses: Sequence[tuple[int, int]], ids: Mapping[str, int]) -> str | None:
    """The member that leads according to the answer of the highest term that names one;
    None when no answer names a known leader."""
    for _term, leader in sorted(statuses, reverse=True):
        for name, member_id in ids.items():
            if leader and member_id == leader:
                return name
    return None


def parse_started_members(body: str) -> tuple[str, ...]:
    """:func:`started_member_names` of the answer's JSON text (nothing if it is not JSON)."""
    try:
        return started_member_names(json.loads(body))
    except ValueError:
        return ()


V2_KEYS = "curl .../v2/keys/"


def parse_v2_action(stdout: str) -> str:
    """The ``action`` of an answer of etcd's v2 keys API (``get`` for a read)."""
    return str(_dict_field(V2_KEYS, _load_json(V2_KEYS, stdout), "action", str))


# --- etcdctl endpoint health --------------------------------------------------

ENDPOINT_HEALTH = "etcdctl endpoint health"

_HEALTH_LINE = re.compile(
    r"^(?P<endpoint>\S+) is (?:healthy: successfully committed proposal: took = (?P<took>\S+)"
    r"|unhealthy: failed to commit proposal: (?P<error>.*))$"
)


@dataclass(frozen=True)
class EndpointHealth:
    """Whether one endpoint committed etcdctl's health-check proposal."""

    endpoint: str
    healthy: bool
    took: float | None  # seconds; None when the text form reports a failure
    error: str = ""


def parse_endpoint_health(output: str) -> tuple[EndpointHealth, ...]:
    """Endpoints from ``etcdctl endpoint health``, ``-w json`` or the text form.

    The text form prints healthy endpoints on stdout and unhealthy ones on
    stderr, so pass both streams to see every endpoint; other lines (etcdctl's
    log lines, ``Error: unhealthy cluster``) are skipped.
    """
    text = output.strip()
    if text.startswith("["):
        return _endpoint_health_json(output)
    found = []
    for line in text.splitlines():
        match = _HEALTH_LINE.match(line.strip())
        if match is None:
            continue
        took = match["took"]
        found.append(
            EndpointHealth(
                endpoint=match["endpoint"],
                healthy=took is not None,
                took=_took_seconds(ENDPOINT_HEALTH, took) if took is not None else None,
                error=match["error"] or "",
            )
        )
    if not found:
        raise _bad_output(ENDPOINT_HEALTH, "no endpoint reported", output)
    return tuple(found)


def _took_seconds(command: str, took: str) -> float:
    try:
        return parse_go_duration(took)
    except ValueError:
        raise _bad_output(command, f"bad duration {took!r}") from None


def _endpoint_health_json(stdout: str) -> tuple[EndpointHealth, ...]:
    command = f"{ENDPOINT_HEALTH} -w json"
    data = _load_json(command, stdout)
    if not isinstance(data, list):
        raise _bad_output(command, "expected a JSON list", stdout)
    return tuple(
        EndpointHealth(
            endpoint=_dict_field(command, raw, "endpoint", str),
            healthy=_dict_field(command, raw, "health", bool),
            took=_took_seconds(command, _dict_field(command, raw, "took", str)),
            error=_dict_field(command, raw, "error", str, default=""),
        )
        for raw in data
    )


# --- etcdctl endpoint status --------------------------------------------------

ENDPOINT_STATUS = "etcdctl endpoint status -w json"


@dataclass(frozen=True)
class EndpointStatus:
    """One endpoint's view of the cluster: who it is, who leads, at which term."""

    endpoint: str
    cluster_id: int
    member_id: int
    leader_id: int  # 0 when the member knows no leader
    raft_term: int
    raft_index: int
    raft_applied_index: int
    version: str
    db_size: int
    is_learner: bool = False
    errors: tuple[str, ...] = ()

    @property
    def is_leader(self) -> bool:
        return self.leader_id != 0 and self.member_id == self.leader_id


def parse_endpoint_status(stdout: str) -> tuple[EndpointStatus, ...]:
    """Endpoints from ``etcdctl endpoint status -w json`` (with or without ``--cluster``)."""
    data = _load_json(ENDPOINT_STATUS, stdout)
    if not isinstance(data, list):
        raise _bad_output(ENDPOINT_STATUS, "expected a JSON list", stdout)
    statuses = []
    for raw in data:
        status = _dict_field(ENDPOINT_STATUS, raw, "Status", dict)
        header = _dict_field(ENDPOINT_STATUS, status, "header", dict)
        statuses.append(
            EndpointStatus(
                endpoint=_dict_field(ENDPOINT_STATUS, raw, "Endpoint", str),
                cluster_id=_dict_field(ENDPOINT_STATUS, header, "cluster_id", int),
                member_id=_dict_field(ENDPOINT_STATUS, header, "member_id", int),
                leader_id=_dict_field(ENDPOINT_STATUS, status, "leader", int, default=0),
                raft_term=_dict_field(ENDPOINT_STATUS, status, "raftTerm", int),
                raft_index=_dict_field(ENDPOINT_STATUS, status, "raftIndex", int),
                raft_applied_index=_dict_field(
                    ENDPOINT_STATUS, status, "raftAppliedIndex", int, default=0
                ),
                version=_dict_field(ENDPOINT_STATUS, status, "version", str),
                db_size=_dict_field(ENDPOINT_STATUS, status, "dbSize", int),
                is_learner=_dict_field(ENDPOINT_STATUS, status, "isLearner", bool, default=False),
                errors=_str_list(ENDPOINT_STATUS, status, "errors"),
            )
        )
    return tuple(statuses)


# --- fleetctl -----------------------------------------------------------------

LIST_MACHINES = "fleetctl list-machines --full --no-legend"
LIST_UNITS = "fleetctl list-units --full --no-legend"
_NONE = "-"  # fleetctl's placeholder for an empty cell
_ABBREVIATION = "..."


def _fleet_rows(command: str, stdout: str, columns: int, header: str) -> list[list[str]]:
    """Rows of a fleetctl table: cells padded with tabs (Go tabwriter), none empty.

    Splits on whitespace at most ``columns - 1`` times, so only the last cell may
    hold spaces; a header row (``--no-legend`` forgotten) is skipped.
    """
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        cells = line.strip().split(maxsplit=columns - 1)
        if cells[0] == header:
            continue
        if len(cells) != columns:
            raise _bad_output(command, f"expected {columns} columns", line)
        rows.append(cells)
    return rows


@dataclass(frozen=True)
class FleetMachine:
    """A machine fleet sees: its machine-id, public IP and metadata."""

    machine_id: str
    ip: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def abbreviated(self) -> bool:
        """True for the short ``xxxxxxxx...`` form printed without ``--full``."""
        return self.machine_id.endswith(_ABBREVIATION)


def parse_fleet_metadata(text: str) -> dict[str, str]:
    """fleetctl's metadata cell: ``k=v,k2=v2`` sorted by key, or ``-`` for none."""
    if text.strip() in ("", _NONE):
        return {}
    metadata = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _bad_output(LIST_MACHINES, f"metadata pair {pair!r} is not key=value", text)
        metadata[key.strip()] = value.strip()
    return metadata


def parse_list_machines(stdout: str) -> tuple[FleetMachine, ...]:
    """Machines from ``fleetctl list-machines --full --no-legend`` (default fields).

    Columns are MACHINE, IP and METADATA; ``-`` means empty. Without ``--full``
    the machine IDs come out abbreviated (see :attr:`FleetMachine.abbreviated`).
    """
    return tuple(
        FleetMachine(
            machine_id=machine_id,
            ip=None if ip == _NONE else ip,
            metadata=parse_fleet_metadata(metadata),
        )
        for machine_id, ip, metadata in _fleet_rows(LIST_MACHINES, stdout, 3, "MACHINE")
    )


@dataclass(frozen=True)
class FleetUnitState:
    """One row of ``fleetctl list-units``: a unit's systemd state on one machine."""

    unit: str
    machine_id: str | None
    ip: str | None
    active: str
    sub: str


def parse_list_units(stdout: str) -> tuple[FleetUnitState, ...]:
    """Unit states from ``fleetctl list-units --full --no-legend`` (default fields).

    Columns are UNIT, MACHINE (``<id>/<ip>``, just ``<id>`` when the IP is
    unknown, or ``-``), ACTIVE and SUB.
    """
    states = []
    for unit, machine, active, sub in _fleet_rows(LIST_UNITS, stdout, 4, "UNIT"):
        machine_id: str | None = None
        ip: str | None = None
        if machine != _NONE:
            machine_id, _, ip_part = machine.partition("/")
            ip = ip_part or None
        states.append(
            FleetUnitState(unit=unit, machine_id=machine_id, ip=ip, active=active, sub=sub)
        )
    return tuple(states)


# --- systemctl ----------------------------------------------------------------

LIST_FAILED = "systemctl list-units --state=failed --no-legend --plain"
IS_SYSTEM_RUNNING = "systemctl is-system-running"
_STATUS_MARKS = ("●", "*", "×")  # noqa: RUF001 - what systemctl prints without --plain


@dataclass(frozen=True)
class FailedUnit:
    """A unit systemd lists in the ``failed`` state."""

    unit: str
    load: str
    active: str
    sub: str
    description: str  # the rest of the row: a JOB column, if any job is pending, comes first


def parse_systemctl_failed(stdout: str) -> tuple[FailedUnit, ...]:
    """Units from ``systemctl list-units --state=failed --no-legend``, ``--output=json``
    or the table.

    In the table, columns UNIT LOAD ACTIVE SUB are space-padded and the description
    is the rest of the row; a leading status mark (printed without ``--plain``) is
    dropped. Nothing at all means no failed unit in either form.
    """
    if stdout.strip().startswith("["):
        return _systemctl_units_json(stdout)
    units = []
    for line in stdout.splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith(_STATUS_MARKS):
            text = text[1:].strip()
        cells = text.split(maxsplit=4)
        if len(cells) < 4:
            raise _bad_output(LIST_FAILED, "expected UNIT LOAD ACTIVE SUB columns", line)
        units.append(
            FailedUnit(
                unit=cells[0],
                load=cells[1],
                active=cells[2],
                sub=cells[3],
                description=cells[4] if len(cells) == 5 else "",
            )
        )
    return tuple(units)


def _systemctl_units_json(stdout: str) -> tuple[FailedUnit, ...]:
    """systemctl's JSON table: one object per row, keyed by the lower-cased column
    names; an empty cell is null; a hidden column (the status mark, an empty JOB) is
    left out."""
    command = f"{LIST_FAILED} --output=json"
    data = _load_json(command, stdout)
    if not isinstance(data, list):
        raise _bad_output(command, "expected a JSON list", stdout)
    units = []
    for raw in data:
        row = {str(k).lower(): v for k, v in raw.items()} if isinstance(raw, dict) else raw
        cells = {
            key: _dict_field(command, row, key, str) for key in ("unit", "load", "active", "sub")
        }
        description = row.get("description")
        units.append(
            FailedUnit(**cells, description=description if isinstance(description, str) else "")
        )
    return tuple(units)


class SystemState(StrEnum):
    """What ``systemctl is-system-running`` reports (systemctl(1))."""

    INITIALIZING = "initializing"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    MAINTENANCE = "maintenance"
    STOPPING = "stopping"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


def parse_is_system_running(stdout: str) -> SystemState:
    """The manager's state from ``systemctl is-system-running`` (any exit code)."""
    words = stdout.split()
    if len(words) != 1:
        raise _bad_output(IS_SYSTEM_RUNNING, "expected one word", stdout)
    try:
        return SystemState(words[0])
    except ValueError:
        raise _bad_output(IS_SYSTEM_RUNNING, f"unknown state {words[0]!r}") from None


# --- flannel ----------------------------------------------------------------

FLANNEL_SUBNETS = "/coreos.com/network/subnets/"  # flanneld's leases, one key per node


@dataclass(frozen=True)
class FlannelLease:
    """One node's subnet lease: ``<prefix>/subnets/10.1.19.0-24`` -> LeaseAttrs JSON."""

    subnet: str  # "10.1.19.0/24"
    public_ip: str  # the node's address on the lab network
    backend: str  # "vxlan", "host-gw", "udp"


def flannel_leases(answer: Any, command: str = "etcd range") -> tuple[FlannelLease, ...]:
    """The leases in an etcd v3 range answer (``etcdctl get --prefix -w json`` prints the
    same object as the JSON gateway): base64 keys and values, flannel's LeaseAttrs."""
    import base64

    kvs = _dict_field(command, answer, "kvs", list, [])
    leases = []
    for kv in kvs:
        try:
            key = base64.b64decode(_dict_field(command, kv, "key", str)).decode()
            attrs = json.loads(base64.b64decode(_dict_field(command, kv, "value", str, "")))
        except ValueError as exc:
            raise _bad_output(command, f"a lease that is not base64 JSON ({exc})") from exc
        name = key.rsplit("/", 1)[-1]
        if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+-\d+", name):
            raise _bad_output(command, f"a lease key that is not <ip>-<len>: {key!r}")
        leases.append(
            FlannelLease(
                subnet=name.replace("-", "/"),
                public_ip=str(_dict_field(command, attrs, "PublicIP", str)),
                backend=str(_dict_field(command, attrs, "BackendType", str, "udp")),
            )
        )
    return tuple(sorted(leases, key=lambda lease: lease.public_ip))


def parse_flannel_leases(stdout: str) -> tuple[FlannelLease, ...]:
    command = f"etcdctl get --prefix {FLANNEL_SUBNETS} -w json"
    return flannel_leases(_load_json(command, stdout), command)


def parse_subnet_env(text: str) -> dict[str, str]:
    """``/run/flannel/subnet.env``: ``KEY=value`` lines (``FLANNEL_SUBNET=10.1.19.1/24``)."""
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise _bad_output("cat /run/flannel/subnet.env", "a line without =", line)
            found[key.strip()] = value.strip()
    return found

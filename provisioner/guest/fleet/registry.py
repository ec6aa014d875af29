"""fleet's registry in etcd v3: the key layout and typed reads and writes.

Key names mirror fleet's own v2 layout under the prefix (default
``/_coreos.com/fleet/``); TTL'd v2 keys become keys attached to v3 leases.
See README.md in this directory for the full table.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from provisioner.guest.fleet.errors import RegistryError
from provisioner.guest.fleet.etcd import (
    EtcdClient,
    KeyValue,
    cmp_create_revision,
    cmp_value,
    op_delete,
    op_put,
    op_range,
)
from provisioner.guest.fleet.model import (
    INACTIVE,
    JOB_STATES,
    Job,
    MachineState,
    UnitState,
    current_job_state,
    make_job,
    with_metadata,
)
from provisioner.guest.fleet.unitfile import UnitFile, parse_unit_file

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/_coreos.com/fleet/"
ENGINE_VERSION = 1


def normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip() or DEFAULT_PREFIX
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix if prefix.endswith("/") else prefix + "/"


@dataclass(frozen=True)
class JobRecord:
    """What ``job/<name>/*`` holds for one unit."""

    name: str
    unit_hash: str
    target_state: str
    target: str | None
    heartbeat: str | None


@dataclass(frozen=True)
class LeaderRecord:
    machine_id: str
    version: int
    create_revision: int
    lease: int


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of jobs, machines and unit states."""

    revision: int
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    machines: dict[str, MachineState] = field(default_factory=dict)
    unit_states: dict[tuple[str, str], UnitState] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitView:
    """A unit as fleetctl and the API present it."""

    name: str
    unit: UnitFile
    desired_state: str
    current_state: str
    machine_id: str

    @property
    def is_global(self) -> bool:
        return make_job(self.name, self.unit).is_global


def _hash_bytes(unit_hash: str) -> list[int]:
    return list(bytes.fromhex(unit_hash))


def _hash_hex(data: Any) -> str:
    if isinstance(data, list) and len(data) == 20:
        return bytes(int(b) & 0xFF for b in data).hex()
    raise RegistryError(f"unit hash {data!r} is not a 20-byte SHA1")


class Registry:
    """Typed access to fleet's keys under one prefix."""

    def __init__(self, etcd: EtcdClient, prefix: str = DEFAULT_PREFIX) -> None:
        self.etcd = etcd
        self.prefix = normalize_prefix(prefix)
        self._bodies: dict[str, UnitFile] = {}
        self._bodies_lock = threading.Lock()

    # -- keys -----------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def job_key(self, name: str, leaf: str) -> str:
        return self.key("job", name, leaf)

    def unit_body_key(self, unit_hash: str) -> str:
        return self.key("unit", unit_hash)

    def machine_key(self, machine_id: str) -> str:
        return self.key("machines", machine_id, "object")

    def state_key(self, name: str, machine_id: str) -> str:
        return self.key("states", name, machine_id)

    @property
    def leader_key(self) -> str:
        return self.key("lease", "engine-leader")

    @property
    def engine_version_key(self) -> str:
        return self.key("engine", "version")

    # -- reads ----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Jobs, live machines and unit states, read atomically in one transaction."""
        result = self.etcd.txn(
            [],
            [
                op_range(self.key("job") + "/", prefix=True),
                op_range(self.key("machines") + "/", prefix=True),
                op_range(self.key("states") + "/", prefix=True),
            ],
            retry=True,
        )
        job_kvs, machine_kvs, state_kvs = result.ranges()
        return Snapshot(
            revision=result.revision,
            jobs=self._parse_jobs(job_kvs),
            machines=self._parse_machines(machine_kvs),
            unit_states=self._parse_states(state_kvs),
        )

    def _relative(self, kv: KeyValue) -> list[str]:
        return kv.key[len(self.prefix) :].split("/")

    def _parse_jobs(self, kvs: list[KeyValue]) -> dict[str, JobRecord]:
        fields: dict[str, dict[str, str]] = {}
        for kv in kvs:
            parts = self._relative(kv)
            if len(parts) == 3:
                fields.setdefault(parts[1], {})[parts[2]] = kv.value
        jobs: dict[str, JobRecord] = {}
        for name, leaves in fields.items():
            if "object" not in leaves:
                continue
            try:
                unit_hash = _hash_hex(json.loads(leaves["object"]).get("UnitHash"))
            except (ValueError, AttributeError, RegistryError) as exc:
                log.warning("ignoring unit %s with unreadable job object: %s", name, exc)
                continue
            state = leaves.get("target-state", INACTIVE)
            jobs[name] = JobRecord(
                name=name,
                unit_hash=unit_hash,
                target_state=state if state in JOB_STATES else INACTIVE,
                target=leaves.get("target") or None,
                heartbeat=leaves.get("job-state") or None,
            )
        return dict(sorted(jobs.items()))

    def _parse_machines(self, kvs: list[KeyValue]) -> dict[str, MachineState]:
        """Live machines (those with an object), their dynamic metadata merged in."""
        machines: dict[str, MachineState] = {}
        dynamic: dict[str, dict[str, str]] = {}
        for kv in kvs:
            parts = self._relative(kv)
            if len(parts) == 4 and parts[2] == "metadata":
                dynamic.setdefault(parts[1], {})[parts[3]] = kv.value
                continue
            if len(parts) != 3 or parts[2] != "object":
                continue
            try:
                machine = MachineState.from_dict(json.loads(kv.value))
            except (ValueError, AttributeError) as exc:
                log.warning("ignoring unreadable machine object %s: %s", kv.key, exc)
                continue
            machines[parts[1]] = machine
        merged = {
            machine.id or key: with_metadata(
                machine, merge_metadata(machine.metadata_dict(), dynamic.get(key, {}))
            )
            for key, machine in machines.items()
        }
        return dict(sorted(merged.items()))

    def _parse_states(self, kvs: list[KeyValue]) -> dict[tuple[str, str], UnitState]:
        states: dict[tuple[str, str], UnitState] = {}
        for kv in kvs:
            parts = self._relative(kv)
            if len(parts) != 3:
                continue
            try:
                data = json.loads(kv.value)
            except ValueError:
                continue
            states[(parts[1], parts[2])] = UnitState(
                name=parts[1],
                machine_id=parts[2],
                load_state=str(data.get("loadState", "")),
                active_state=str(data.get("activeState", "")),
                sub_state=str(data.get("subState", "")),
                unit_hash=str(data.get("unitHash", "")),
            )
        return dict(sorted(states.items()))

    def unit_file(self, unit_hash: str) -> UnitFile:
        """The unit file stored under ``unit/<hash>`` (cached: content-addressed)."""
        with self._bodies_lock:
            cached = self._bodies.get(unit_hash)
        if cached is not None:
            return cached
        kv = self.etcd.get(self.unit_body_key(unit_hash))
        if kv is None:
            raise RegistryError(f"unit body {self.unit_body_key(unit_hash)} is missing")
        raw = json.loads(kv.value).get("Raw", "")
        unit = parse_unit_file(str(raw), source=self.unit_body_key(unit_hash))
        with self._bodies_lock:
            self._bodies[unit_hash] = unit
        return unit

    def jobs(self, snapshot: Snapshot) -> list[Job]:
        """Jobs of a snapshot with their unit files (units with missing bodies are skipped)."""
        jobs: list[Job] = []
        for record in snapshot.jobs.values():
            try:
                unit = self.unit_file(record.unit_hash)
            except RegistryError as exc:
                log.warning("skipping unit %s: %s", record.name, exc)
                continue
            jobs.append(make_job(record.name, unit, record.target_state, record.target))
        return jobs

    def unit_views(self, snapshot: Snapshot) -> list[UnitView]:
        views: list[UnitView] = []
        for record in snapshot.jobs.values():
            try:
                unit = self.unit_file(record.unit_hash)
            except RegistryError as exc:
                log.warning("skipping unit %s: %s", record.name, exc)
                continue
            target = record.target or ""
            has_state = (record.name, target) in snapshot.unit_states
            current = current_job_state(record.target, has_state, record.heartbeat)
            view = UnitView(record.name, unit, record.target_state, current, target)
            if view.is_global:
                view = UnitView(record.name, unit, record.target_state, "", "")
            views.append(view)
        return views

    def leader(self) -> LeaderRecord | None:
        kv = self.etcd.get(self.leader_key)
        if kv is None:
            return None
        try:
            data = json.loads(kv.value)
        except ValueError:
            data = {}
        return LeaderRecord(
            machine_id=str(data.get("MachineID", "")),
            version=int(data.get("Version", 0) or 0),
            create_revision=kv.create_revision,
            lease=kv.lease,
        )

    # -- unit writes ----------------------------------------------------------------
    def _store_body(self, unit: UnitFile) -> None:
        key = self.unit_body_key(unit.hash)
        body = json.dumps({"Raw": unit.text})
        self.etcd.txn([cmp_create_revision(key, 0)], [op_put(key, body)], retry=True)
        with self._bodies_lock:
            self._bodies[unit.hash] = unit

    def _job_object(self, name: str, unit: UnitFile) -> str:
        return json.dumps({"Name": name, "UnitHash": _hash_bytes(unit.hash)})

    def create_unit(self, name: str, unit: UnitFile, target_state: str = INACTIVE) -> bool:
        """Create a unit (create-only); False if a unit of that name already exists."""
        self._store_body(unit)
        result = self.etcd.txn(
            [cmp_create_revision(self.job_key(name, "object"), 0)],
            [
                op_put(self.job_key(name, "object"), self._job_object(name, unit)),
                op_put(self.job_key(name, "target-state"), target_state),
            ],
        )
        return result.succeeded

    def replace_unit(self, name: str, unit: UnitFile) -> None:
        """Point an existing unit at new contents (``--replace``); agents reload it."""
        self._store_body(unit)
        self.etcd.put(self.job_key(name, "object"), self._job_object(name, unit))

    def set_target_state(self, name: str, state: str) -> bool:
        """Set a unit's desired state; False if the unit does not exist."""
        if state not in JOB_STATES:
            raise RegistryError(f"invalid value {state!r} for JobState")
        result = self.etcd.txn(
            [cmp_create_revision(self.job_key(name, "object"), 0, "GREATER")],
            [op_put(self.job_key(name, "target-state"), state)],
            retry=True,
        )
        return result.succeeded

    def destroy_unit(self, name: str) -> bool:
        """Delete ``job/<name>/`` recursively; False if there was nothing."""
        return self.etcd.delete(self.key("job", name) + "/", prefix=True) > 0

    # -- engine writes (fenced by the leader key) -------------------------------------
    def _fence(self, leader_revision: int) -> list[dict[str, Any]]:
        return [cmp_create_revision(self.leader_key, leader_revision)] if leader_revision else []

    def schedule_unit(self, name: str, machine_id: str, leader_revision: int = 0) -> bool:
        """Write ``job/<name>/target`` if unset and the unit still exists."""
        target = self.job_key(name, "target")
        result = self.etcd.txn(
            [
                cmp_create_revision(target, 0),
                cmp_create_revision(self.job_key(name, "object"), 0, "GREATER"),
                *self._fence(leader_revision),
            ],
            [op_put(target, machine_id)],
        )
        return result.succeeded

    def unschedule_unit(self, name: str, machine_id: str, leader_revision: int = 0) -> bool:
        """Delete ``job/<name>/target`` if it still names ``machine_id``."""
        target = self.job_key(name, "target")
        result = self.etcd.txn(
            [cmp_value(target, machine_id), *self._fence(leader_revision)],
            [op_delete(target)],
        )
        return result.succeeded

    # -- machine presence -------------------------------------------------------------
    def register_machine(self, machine: MachineState, lease: int) -> bool:
        """Create ``machines/<id>/object`` bound to ``lease``; False if it exists."""
        key = self.machine_key(machine.id)
        result = self.etcd.txn(
            [cmp_create_revision(key, 0)], [op_put(key, machine.to_json(), lease)]
        )
        return result.succeeded

    def update_machine(self, machine: MachineState, lease: int) -> None:
        self.etcd.put(self.machine_key(machine.id), machine.to_json(), lease=lease)

    def machine_metadata_key(self, machine_id: str, key: str) -> str:
        return self.key("machines", machine_id, "metadata", key)

    def set_machine_metadata(self, machine_id: str, key: str, value: str) -> None:
        """Dynamic metadata (``PATCH /machines``); kept while the machine is away."""
        self.etcd.put(self.machine_metadata_key(machine_id, key), value)

    def delete_machine_metadata(self, machine_id: str, key: str) -> None:
        """As fleet: an empty value, so it also hides the machine's own value of the key."""
        self.set_machine_metadata(machine_id, key, "")

    def machine_present(self, machine_id: str) -> bool:
        return self.etcd.get(self.machine_key(machine_id)) is not None

    def ensure_engine_version(self) -> None:
        key = self.engine_version_key
        self.etcd.txn([cmp_create_revision(key, 0)], [op_put(key, str(ENGINE_VERSION))], retry=True)

    # -- agent writes -----------------------------------------------------------------
    def publish_unit_state(
        self, state: UnitState, machine: MachineState, lease: int, *, launched: bool
    ) -> None:
        """Publish ``states/<unit>/<machine>`` and the launched heartbeat, on ``lease``."""
        body = json.dumps(
            {
                "loadState": state.load_state,
                "activeState": state.active_state,
                "subState": state.sub_state,
                "machineState": json.loads(machine.to_json()),
                "unitHash": state.unit_hash,
            }
        )
        ops = [op_put(self.state_key(state.name, state.machine_id), body, lease)]
        if launched:
            ops.append(op_put(self.job_key(state.name, "job-state"), machine.id, lease))
        self.etcd.txn([], ops, retry=True)
        if not launched:
            self.clear_heartbeat(state.name, machine.id)

    def clear_heartbeat(self, name: str, machine_id: str) -> None:
        key = self.job_key(name, "job-state")
        self.etcd.txn([cmp_value(key, machine_id)], [op_delete(key)], retry=True)

    def remove_unit_state(self, name: str, machine_id: str) -> None:
        self.etcd.delete(self.state_key(name, machine_id))
        self.clear_heartbeat(name, machine_id)


def merge_metadata(own: dict[str, str], dynamic: dict[str, str]) -> dict[str, str]:
    """fleet's mergeMetadata: dynamic values win; an empty dynamic value deletes the key."""
    merged = dict(own)
    for key, value in dynamic.items():
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    return merged


def leader_value(machine_id: str) -> str:
    return json.dumps({"MachineID": machine_id, "Version": ENGINE_VERSION})


__all__ = [
    "DEFAULT_PREFIX",
    "JobRecord",
    "LeaderRecord",
    "Registry",
    "Snapshot",
    "UnitView",
    "leader_value",
    "merge_metadata",
    "normalize_prefix",
]

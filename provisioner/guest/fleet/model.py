"""Typed data shared by the engine, the agents and fleetctl."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.guest.fleet.requirements import Requirements, requirements_of
from provisioner.guest.fleet.unitfile import UnitFile

INACTIVE = "inactive"
LOADED = "loaded"
LAUNCHED = "launched"
JOB_STATES = (INACTIVE, LOADED, LAUNCHED)


@dataclass(frozen=True)
class MachineState:
    """A machine as registered in etcd (fleet's MachineState)."""

    id: str
    public_ip: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    version: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def match_id(self, wanted: str) -> bool:
        """fleet's MatchID: the full ID or the 8-character short ID."""
        return wanted in (self.id, self.short_id)

    def metadata_dict(self) -> dict[str, str]:
        return dict(self.metadata)

    def has_metadata(self, required: Mapping[str, frozenset[str]]) -> bool:
        """Every required key present with one of its allowed values."""
        own = self.metadata_dict()
        return all(key in own and own[key] in values for key, values in required.items())

    def to_json(self) -> str:
        return json.dumps(
            {
                "ID": self.id,
                "PublicIP": self.public_ip,
                "Metadata": self.metadata_dict(),
                "Capabilities": {},
                "Version": self.version,
            },
            sort_keys=False,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineState:
        metadata = data.get("Metadata") or {}
        return cls(
            id=str(data.get("ID", "")),
            public_ip=str(data.get("PublicIP", "") or ""),
            metadata=tuple(sorted((str(k), str(v)) for k, v in dict(metadata).items())),
            version=str(data.get("Version", "") or ""),
        )


def with_metadata(machine: MachineState, metadata: Mapping[str, str]) -> MachineState:
    return MachineState(
        id=machine.id,
        public_ip=machine.public_ip,
        metadata=tuple(sorted(metadata.items())),
        version=machine.version,
    )


@dataclass(frozen=True)
class Job:
    """A unit known to fleet plus its scheduling state (fleet's job.Job)."""

    name: str
    unit: UnitFile
    target_state: str = INACTIVE
    target_machine: str | None = None
    requirements: Requirements = field(default_factory=Requirements)

    @property
    def is_global(self) -> bool:
        return self.requirements.is_global

    @property
    def scheduled(self) -> bool:
        return bool(self.target_machine)


def make_job(
    name: str, unit: UnitFile, target_state: str = INACTIVE, target_machine: str | None = None
) -> Job:
    return Job(name, unit, target_state, target_machine or None, requirements_of(name, unit))


@dataclass(frozen=True)
class SystemdState:
    """What systemd says about one unit."""

    load_state: str
    active_state: str
    sub_state: str


@dataclass(frozen=True)
class UnitState:
    """A unit's systemd state as published by the agent running it."""

    name: str
    machine_id: str
    load_state: str
    active_state: str
    sub_state: str
    unit_hash: str = ""


def current_job_state(target: str | None, has_unit_state: bool, heartbeat: str | None) -> str:
    """fleet's determineJobState: inactive / loaded / launched."""
    if not target or not has_unit_state:
        return INACTIVE
    if heartbeat == target:
        return LAUNCHED
    return LOADED

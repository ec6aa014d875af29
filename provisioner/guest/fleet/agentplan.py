"""The agent's decisions, as pure functions: what should run here, and what to do.

``desired_units`` says which units this machine should have loaded (and in which
state): the units the engine scheduled here plus the global units it qualifies
for. ``plan_agent_tasks`` compares that with what is loaded locally and returns
the systemd operations, in the order they must run: stops, unloads, loads, one
``daemon-reload`` if unit files changed, then starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from provisioner.guest.fleet.model import INACTIVE, LAUNCHED, LOADED, Job, MachineState
from provisioner.guest.fleet.scheduler import global_units_for
from provisioner.guest.fleet.unitfile import UnitFile

TaskKind = Literal["load", "unload", "start", "stop", "reload"]


@dataclass(frozen=True)
class DesiredUnit:
    """A unit this machine should have, in ``loaded`` or ``launched`` state."""

    name: str
    unit: UnitFile
    target_state: str
    is_global: bool = False

    @property
    def hash(self) -> str:
        return self.unit.hash


@dataclass(frozen=True)
class LocalUnit:
    """A unit the agent has loaded into systemd."""

    name: str
    hash: str
    state: str  # loaded | launched


@dataclass(frozen=True)
class AgentTask:
    kind: TaskKind
    unit: str
    reason: str


def desired_units(machine: MachineState, jobs: Iterable[Job]) -> dict[str, DesiredUnit]:
    """Units scheduled to ``machine`` plus the global units it should run."""
    job_list = list(jobs)
    desired: dict[str, DesiredUnit] = {}
    for job in job_list:
        if job.is_global or job.target_machine != machine.id or job.target_state == INACTIVE:
            continue
        desired[job.name] = DesiredUnit(job.name, job.unit, job.target_state)
    for job in global_units_for(machine, job_list):
        desired[job.name] = DesiredUnit(job.name, job.unit, job.target_state, is_global=True)
    return desired


def plan_agent_tasks(
    desired: Mapping[str, DesiredUnit], current: Mapping[str, LocalUnit]
) -> list[AgentTask]:
    """systemd operations that move ``current`` to ``desired``."""
    stops: list[AgentTask] = []
    unloads: list[AgentTask] = []
    loads: list[AgentTask] = []
    starts: list[AgentTask] = []
    for name in sorted(set(desired) | set(current)):
        want = desired.get(name)
        have = current.get(name)
        if want is None and have is not None:
            if have.state == LAUNCHED:
                stops.append(AgentTask("stop", name, "unit loaded but not scheduled here"))
            unloads.append(AgentTask("unload", name, "unit loaded but not scheduled here"))
        elif want is not None and have is None:
            loads.append(AgentTask("load", name, "unit scheduled here but not loaded"))
            if want.target_state == LAUNCHED:
                starts.append(AgentTask("start", name, "unit scheduled here but not started"))
        elif want is not None and have is not None:
            if have.hash != want.hash:
                reason = "unit file changed"
                if have.state == LAUNCHED:
                    stops.append(AgentTask("stop", name, reason))
                unloads.append(AgentTask("unload", name, reason))
                loads.append(AgentTask("load", name, reason))
                if want.target_state == LAUNCHED:
                    starts.append(AgentTask("start", name, reason))
            elif have.state == LOADED and want.target_state == LAUNCHED:
                starts.append(AgentTask("start", name, "unit loaded but desired state is launched"))
            elif have.state == LAUNCHED and want.target_state == LOADED:
                stops.append(AgentTask("stop", name, "unit launched but desired state is loaded"))
    reload = [AgentTask("reload", "", "unit files changed")] if unloads or loads else []
    return stops + unloads + loads + reload + starts


def apply_task(current: dict[str, LocalUnit], task: AgentTask, desired: DesiredUnit | None) -> None:
    """Record the effect of a completed task in the agent's view of local units."""
    if task.kind == "unload":
        current.pop(task.unit, None)
    elif task.kind == "load" and desired is not None:
        current[task.unit] = LocalUnit(task.unit, desired.hash, LOADED)
    elif task.kind == "start" and task.unit in current:
        unit = current[task.unit]
        current[task.unit] = LocalUnit(unit.name, unit.hash, LAUNCHED)
    elif task.kind == "stop" and task.unit in current:
        unit = current[task.unit]
        current[task.unit] = LocalUnit(unit.name, unit.hash, LOADED)

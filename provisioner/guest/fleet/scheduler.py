"""The engine's decisions, as pure functions over a snapshot of the cluster.

``plan_engine_tasks(snapshot)`` answers "which units must be unscheduled and
where must unscheduled units go" the way fleet's engine reconciler does:

1. every scheduled unit whose target state is ``inactive``, whose machine went
   away, or which its machine can no longer run (MachineID, MachineMetadata,
   MachineOf peer, Conflicts) is unscheduled; a ``Replaces`` collision moves the
   replaced unit to another machine;
2. every unscheduled unit with target state ``loaded``/``launched`` goes to the
   first machine able to run it, machines sorted by (number of units, machine ID).

Decisions update the in-memory state, so later units in the same pass see
earlier placements. Both steps repeat until nothing changes, so a ``MachineOf``
follower lands with its peer in the same pass whatever their names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from provisioner.guest.fleet.model import INACTIVE, Job, MachineState
from provisioner.guest.fleet.requirements import glob_matches

SCHEDULE: Final = "schedule"
UNSCHEDULE: Final = "unschedule"
RESCHEDULE: Final = "reschedule"
Verdict = Literal["schedule", "unschedule", "reschedule"]


@dataclass
class AgentState:
    """What the engine believes one machine runs (mutable working copy)."""

    machine: MachineState
    units: dict[str, Job] = field(default_factory=dict)

    def conflict_with(self, job: Job) -> str | None:
        """Name of a local unit that conflicts with ``job`` (either direction)."""
        for name in sorted(self.units):
            if name == job.name:
                continue
            other = self.units[name]
            if any(glob_matches(pattern, name) for pattern in job.requirements.conflicts):
                return name
            if any(glob_matches(pattern, job.name) for pattern in other.requirements.conflicts):
                return name
        return None

    def replace_partner(self, job: Job) -> str | None:
        """Name of a local unit in a one-directional Replaces relation with ``job``."""
        for name in sorted(self.units):
            if name == job.name:
                continue
            other = self.units[name]
            forward = any(glob_matches(p, name) for p in job.requirements.replaces)
            backward = any(glob_matches(p, job.name) for p in other.requirements.replaces)
            if forward != backward:  # both directions: circular, ignored
                return name
        return None


def able_to_run(agent: AgentState, job: Job) -> tuple[Verdict, str]:
    """fleet's AbleToRun: MachineID, MachineMetadata, MachineOf, Conflicts, Replaces."""
    req = job.requirements
    if req.machine_id is not None and not agent.machine.match_id(req.machine_id):
        wanted = req.machine_id
        return UNSCHEDULE, f'agent ID "{agent.machine.id}" does not match required "{wanted}"'
    metadata = req.metadata_map()
    if metadata and not agent.machine.has_metadata(metadata):
        return UNSCHEDULE, "local Machine metadata insufficient"
    for peer in req.peers:
        if peer not in agent.units:
            return UNSCHEDULE, f"required peer Unit({peer}) is not scheduled locally"
    conflict = agent.conflict_with(job)
    if conflict is not None:
        return UNSCHEDULE, f"found conflict with locally-scheduled Unit({conflict})"
    if agent.replace_partner(job) is not None:
        return RESCHEDULE, "jobreschedule"
    return SCHEDULE, ""


@dataclass(frozen=True)
class ClusterSnapshot:
    """Live machines and all units with their target state and target machine."""

    machines: tuple[MachineState, ...]
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class EngineTask:
    """One change to the schedule: put or remove ``job/<unit>/target``."""

    kind: Literal["schedule", "unschedule"]
    unit: str
    machine_id: str
    reason: str


class _Cluster:
    """Working copy of the schedule while one pass is being decided."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.jobs = {job.name: job for job in sorted(snapshot.jobs, key=lambda j: j.name)}
        self.target: dict[str, str] = {
            job.name: job.target_machine
            for job in snapshot.jobs
            if job.target_machine and not job.is_global
        }
        self.agents = {m.id: AgentState(m) for m in snapshot.machines}
        for name, machine_id in self.target.items():
            job = self.jobs[name]
            if machine_id in self.agents and job.target_state != INACTIVE:
                self.agents[machine_id].units[name] = job
        for job in self.jobs.values():
            if not job.is_global or job.target_state == INACTIVE:
                continue
            for agent in self.agents.values():
                if able_to_run(agent, job)[0] != UNSCHEDULE:
                    agent.units[job.name] = job
        self.tasks: list[EngineTask] = []

    def sorted_agents(self) -> list[AgentState]:
        return sorted(self.agents.values(), key=lambda a: (len(a.units), a.machine.id))

    def schedule(self, name: str, machine_id: str, reason: str) -> None:
        self.target[name] = machine_id
        self.agents[machine_id].units[name] = self.jobs[name]
        self.tasks.append(EngineTask(SCHEDULE, name, machine_id, reason))

    def unschedule(self, name: str, reason: str) -> None:
        machine_id = self.target.pop(name)
        agent = self.agents.get(machine_id)
        if agent is not None:
            agent.units.pop(name, None)
        self.tasks.append(EngineTask(UNSCHEDULE, name, machine_id, reason))

    def decide(self, job: Job) -> str | None:
        """Least-loaded machine able to run ``job``.

        A Replaces collision is allowed where ``job`` is the replacing unit (the
        other one is moved away), never where ``job`` itself would be replaced.
        """
        for agent in self.sorted_agents():
            verdict = able_to_run(agent, job)[0]
            if verdict == SCHEDULE:
                return agent.machine.id
            if verdict == RESCHEDULE and not self._would_be_replaced(agent, job):
                return agent.machine.id
        return None

    @staticmethod
    def _would_be_replaced(agent: AgentState, job: Job) -> bool:
        partner = agent.replace_partner(job)
        return partner is not None and not any(
            glob_matches(p, partner) for p in job.requirements.replaces
        )

    def decide_reschedule(self, job: Job, current: str) -> str | None:
        """Least-loaded other machine that can run ``job`` without any collision."""
        for agent in self.sorted_agents():
            if agent.machine.id != current and able_to_run(agent, job)[0] == SCHEDULE:
                return agent.machine.id
        return None

    def resolve_replace(self, job: Job, machine_id: str, displaced: set[str]) -> bool:
        """Move the replaced unit of a Replaces pair off ``machine_id``; True if moved."""
        agent = self.agents[machine_id]
        partner = agent.replace_partner(job)
        if partner is None:
            return False
        if any(glob_matches(p, partner) for p in job.requirements.replaces):
            replaced = self.jobs[partner]
        else:
            replaced = job
        if replaced.is_global or self.target.get(replaced.name) != machine_id:
            return False
        self.unschedule(replaced.name, f"unit replaced on Machine({machine_id})")
        displaced.add(replaced.name)
        dest = self.decide_reschedule(replaced, machine_id)
        if dest is not None:
            self.schedule(replaced.name, dest, f"rescheduled after being replaced on {machine_id}")
        return True

    def check_scheduled(self, displaced: set[str]) -> bool:
        """Step 1 over every scheduled unit; True if anything changed."""
        changed = False
        for name in sorted(self.target):
            if name not in self.target:
                continue
            job = self.jobs[name]
            machine_id = self.target[name]
            if job.target_state == INACTIVE:
                self.unschedule(name, "target state inactive")
                changed = True
                continue
            agent = self.agents.get(machine_id)
            if agent is None:
                self.unschedule(name, f"target Machine({machine_id}) went away")
                changed = True
                continue
            verdict, why = able_to_run(agent, job)
            if verdict == UNSCHEDULE:
                self.unschedule(name, f"target Machine({machine_id}) unable to run unit: {why}")
                changed = True
            elif verdict == RESCHEDULE:
                changed = self.resolve_replace(job, machine_id, displaced) or changed
        return changed

    def schedule_pending(self, displaced: set[str]) -> bool:
        """Step 2 over every unscheduled unit; True if anything was placed."""
        changed = False
        for name, job in self.jobs.items():
            if name in self.target or name in displaced:
                continue
            if job.is_global or job.target_state == INACTIVE:
                continue
            dest = self.decide(job)
            if dest is None:
                continue
            collides = able_to_run(self.agents[dest], job)[0] == RESCHEDULE
            self.schedule(name, dest, f"target state {job.target_state} and unit not scheduled")
            changed = True
            if collides:
                self.resolve_replace(job, dest, displaced)
        return changed


def plan_engine_tasks(snapshot: ClusterSnapshot) -> list[EngineTask]:
    """The schedule changes one engine pass makes, in the order to apply them."""
    cluster = _Cluster(snapshot)
    displaced: set[str] = set()
    limit = len(cluster.jobs) + 2
    for _ in range(limit):
        if not cluster.check_scheduled(displaced):
            break
    for _ in range(limit):
        if not cluster.schedule_pending(displaced):
            break
        cluster.check_scheduled(displaced)
    return cluster.tasks


def unschedulable_reasons(snapshot: ClusterSnapshot) -> dict[str, str]:
    """For diagnostics: why each unscheduled, non-global, wanted unit stays unscheduled."""
    cluster = _Cluster(snapshot)
    reasons: dict[str, str] = {}
    for name, job in cluster.jobs.items():
        if name in cluster.target or job.is_global or job.target_state == INACTIVE:
            continue
        if not cluster.agents:
            reasons[name] = "zero agents available"
        elif cluster.decide(job) is None:
            reasons[name] = "no agents able to run job"
    return reasons


def machine_loads(snapshot: ClusterSnapshot) -> dict[str, int]:
    """Number of units the engine counts against each machine (for tests and logs)."""
    cluster = _Cluster(snapshot)
    return {mid: len(agent.units) for mid, agent in cluster.agents.items()}


def global_units_for(machine: MachineState, jobs: Iterable[Job]) -> list[Job]:
    """Global units (target state not inactive) that ``machine`` should run.

    The machine's own scheduled units come first; global units are then accepted
    in name order while they do not conflict with what is already there.
    """
    agent = AgentState(machine)
    ordered = sorted(jobs, key=lambda j: j.name)
    for job in ordered:
        if not job.is_global and job.target_machine == machine.id and job.target_state != INACTIVE:
            agent.units[job.name] = job
    accepted: list[Job] = []
    for job in ordered:
        wanted = job.is_global and job.target_state != INACTIVE
        if wanted and able_to_run(agent, job)[0] != UNSCHEDULE:
            agent.units[job.name] = job
            accepted.append(job)
    return accepted

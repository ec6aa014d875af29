"""The agent: makes this machine run what the registry says it should.

Each pass reads a registry snapshot, computes the desired units for this
machine (``agentplan.desired_units``), plans systemd operations and carries
them out through a ``UnitManager``. If etcd cannot be read the pass is skipped:
running units are never stopped because of an etcd error. States are published
to ``states/<unit>/<machine>`` on the machine's presence lease whenever they
change, with ``job/<unit>/job-state`` as the "launched here" heartbeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from provisioner.guest.fleet.agentplan import (
    AgentTask,
    DesiredUnit,
    LocalUnit,
    apply_task,
    desired_units,
    plan_agent_tasks,
)
from provisioner.guest.fleet.errors import UnitManagerError
from provisioner.guest.fleet.model import LAUNCHED, LOADED, MachineState, UnitState
from provisioner.guest.fleet.registry import Registry, Snapshot
from provisioner.guest.fleet.unitmanager import ACTIVE_STATES, UnitManager

log = logging.getLogger(__name__)


class Agent:
    """Reconciles local systemd units with the registry for one machine."""

    def __init__(
        self,
        registry: Registry,
        manager: UnitManager,
        machine: Callable[[], MachineState],
    ) -> None:
        self.registry = registry
        self.manager = manager
        self._machine = machine
        self.local: dict[str, LocalUnit] = {}
        self._global: set[str] = set()
        self._published: dict[str, tuple[UnitState, bool]] = {}
        self._lock = threading.Lock()

    def initialize(self) -> None:
        """Adopt unit files left loaded by a previous run (running ones stay running)."""
        files = self.manager.loaded_units()
        states = self.manager.states(sorted(files))
        with self._lock:
            for name, unit_hash in files.items():
                state = states.get(name)
                running = state is not None and state.active_state in ACTIVE_STATES
                self.local[name] = LocalUnit(name, unit_hash, LAUNCHED if running else LOADED)
        if files:
            log.info("Found %d unit(s) loaded by a previous run: %s", len(files), sorted(files))

    def reconcile(self, snapshot: Snapshot) -> list[AgentTask]:
        """One pass; returns the tasks completed."""
        machine = self._machine()
        # The registry's view carries the dynamic metadata (PATCH /machines), as in
        # fleet's agent, which reads its own MachineState back from the registry.
        machine = snapshot.machines.get(machine.id, machine)
        jobs = self.registry.jobs(snapshot)
        desired = desired_units(machine, jobs)
        done: list[AgentTask] = []
        with self._lock:
            self._global = {name for name, unit in desired.items() if unit.is_global}
            for task in plan_agent_tasks(desired, self.local):
                failure = self._try(task, desired.get(task.unit))
                if failure:
                    log.error("Failed task %s, halting reconciliation: %s", task, failure)
                    break
                apply_task(self.local, task, desired.get(task.unit))
                log.info(
                    "AgentReconciler completed task: type=%s unit=%s reason=%r",
                    task.kind,
                    task.unit or "-",
                    task.reason,
                )
                done.append(task)
        return done

    def _try(self, task: AgentTask, desired: DesiredUnit | None) -> str:
        """Run a task; the error message if it failed, "" if it worked."""
        try:
            self._execute(task, desired)
        except UnitManagerError as exc:
            return exc.message
        return ""

    def _execute(self, task: AgentTask, desired: DesiredUnit | None) -> None:
        if task.kind == "load":
            if desired is None:
                raise UnitManagerError(f"no unit file to load for {task.unit}")
            self.manager.load(task.unit, desired.unit)
        elif task.kind == "unload":
            self.manager.unload(task.unit)
        elif task.kind == "reload":
            self.manager.reload()
        elif task.kind == "start":
            self.manager.start(task.unit)
        elif task.kind == "stop":
            self.manager.stop(task.unit)

    def publish(self, lease: int, *, force: bool = False) -> int:
        """Publish changed unit states (all of them with ``force``); returns writes made."""
        machine = self._machine()
        with self._lock:
            local = dict(self.local)
            global_units = set(self._global)
        states = self.manager.states(sorted(local))
        writes = 0
        for name, unit in sorted(local.items()):
            systemd = states.get(name)
            if systemd is None:
                continue
            state = UnitState(
                name=name,
                machine_id=machine.id,
                load_state=systemd.load_state,
                active_state=systemd.active_state,
                sub_state=systemd.sub_state,
                unit_hash=unit.hash,
            )
            launched = unit.state == LAUNCHED and name not in global_units
            if not force and self._published.get(name) == (state, launched):
                continue
            self.registry.publish_unit_state(state, machine, lease, launched=launched)
            self._published[name] = (state, launched)
            writes += 1
        for name in sorted(set(self._published) - set(local)):
            self.registry.remove_unit_state(name, machine.id)
            del self._published[name]
            writes += 1
        return writes

    def forget_published(self) -> None:
        """The presence lease changed: everything must be published again."""
        self._published.clear()

    def purge(self) -> None:
        """Stop and unload every local unit (clean shutdown)."""
        with self._lock:
            names = sorted(self.local)
            for name in names:
                unit = self.local[name]
                failure = ""
                if unit.state == LAUNCHED:
                    failure = self._try(AgentTask("stop", name, "purging agent"), None)
                failure = failure or self._try(AgentTask("unload", name, "purging agent"), None)
                if failure:
                    log.error("Failed to unload %s during shutdown: %s", name, failure)
                    continue
                del self.local[name]
                log.info("Purged unit %s", name)
            if names:
                failure = self._try(AgentTask("reload", "", "purging agent"), None)
                if failure:
                    log.error("daemon-reload during shutdown failed: %s", failure)

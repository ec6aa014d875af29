"""The agent's decisions: desired units for a machine and the systemd tasks to get there."""

from __future__ import annotations

import pytest

from provisioner.guest.fleet.agentplan import (
    AgentTask,
    DesiredUnit,
    LocalUnit,
    apply_task,
    desired_units,
    plan_agent_tasks,
)
from provisioner.guest.fleet.model import INACTIVE, LAUNCHED, LOADED, Job, MachineState, make_job
from provisioner.guest.fleet.unitfile import UnitFile, parse_unit_file

pytestmark = pytest.mark.unit

ME = MachineState("a" * 32, "10.0.0.1", (("role", "web"),))
OTHER = MachineState("b" * 32, "10.0.0.2")


def unit(xfleet: str = "", description: str = "x") -> UnitFile:
    text = f"[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/true\n"
    return parse_unit_file(text + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else ""))


def job(name: str, xfleet: str = "", state: str = LAUNCHED, target: str | None = None) -> Job:
    return make_job(name, unit(xfleet), state, target)


def desired(name: str, state: str = LAUNCHED, description: str = "x") -> DesiredUnit:
    return DesiredUnit(name, unit(description=description), state)


def local(name: str, state: str, description: str = "x") -> LocalUnit:
    return LocalUnit(name, unit(description=description).hash, state)


def kinds(tasks: list[AgentTask]) -> list[tuple[str, str]]:
    return [(t.kind, t.unit) for t in tasks]


def test_desired_units_are_mine_and_applicable_globals() -> None:
    jobs = [
        job("mine.service", target=ME.id),
        job("loaded.service", state=LOADED, target=ME.id),
        job("inactive.service", state=INACTIVE, target=ME.id),
        job("theirs.service", target=OTHER.id),
        job("unscheduled.service"),
        job("everywhere.service", "Global=true"),
        job("web-only.service", "Global=true\nMachineMetadata=role=web"),
        job("db-only.service", "Global=true\nMachineMetadata=role=db"),
        job("stopped-global.service", "Global=true", state=INACTIVE),
        job("loaded-global.service", "Global=true", state=LOADED),
    ]
    wanted = desired_units(ME, jobs)
    assert {name: (d.target_state, d.is_global) for name, d in wanted.items()} == {
        "mine.service": (LAUNCHED, False),
        "loaded.service": (LOADED, False),
        "everywhere.service": (LAUNCHED, True),
        "web-only.service": (LAUNCHED, True),
        "loaded-global.service": (LOADED, True),
    }


def test_global_unit_skips_machines_with_a_conflict() -> None:
    jobs = [
        job("db.service", target=ME.id),
        job("monitor.service", "Global=true\nConflicts=db.service"),
        job("other.service", "Global=true"),
    ]
    assert sorted(desired_units(ME, jobs)) == ["db.service", "other.service"]
    assert sorted(desired_units(OTHER, jobs)) == ["monitor.service", "other.service"]


def test_new_units_are_loaded_reloaded_and_started() -> None:
    tasks = plan_agent_tasks(
        {"a.service": desired("a.service"), "b.service": desired("b.service", LOADED)}, {}
    )
    assert kinds(tasks) == [
        ("load", "a.service"),
        ("load", "b.service"),
        ("reload", ""),
        ("start", "a.service"),
    ]


def test_units_no_longer_wanted_are_stopped_then_unloaded() -> None:
    current = {
        "run.service": local("run.service", LAUNCHED),
        "idle.service": local("idle.service", LOADED),
    }
    assert kinds(plan_agent_tasks({}, current)) == [
        ("stop", "run.service"),
        ("unload", "idle.service"),
        ("unload", "run.service"),
        ("reload", ""),
    ]


def test_state_changes_without_file_changes_need_no_reload() -> None:
    current = {
        "up.service": local("up.service", LOADED),
        "down.service": local("down.service", LAUNCHED),
        "same.service": local("same.service", LAUNCHED),
    }
    wanted = {
        "up.service": desired("up.service", LAUNCHED),
        "down.service": desired("down.service", LOADED),
        "same.service": desired("same.service", LAUNCHED),
    }
    assert kinds(plan_agent_tasks(wanted, current)) == [
        ("stop", "down.service"),
        ("start", "up.service"),
    ]


def test_changed_unit_file_is_replaced_and_restarted() -> None:
    current = {"app.service": local("app.service", LAUNCHED, description="old")}
    wanted = {"app.service": desired("app.service", LAUNCHED, description="new")}
    assert kinds(plan_agent_tasks(wanted, current)) == [
        ("stop", "app.service"),
        ("unload", "app.service"),
        ("load", "app.service"),
        ("reload", ""),
        ("start", "app.service"),
    ]


def test_nothing_to_do_when_in_sync() -> None:
    current = {"a.service": local("a.service", LAUNCHED)}
    assert plan_agent_tasks({"a.service": desired("a.service")}, current) == []


def test_applying_tasks_reaches_the_desired_state() -> None:
    current = {
        "gone.service": local("gone.service", LAUNCHED),
        "app.service": local("app.service", LAUNCHED, description="old"),
    }
    wanted = {
        "app.service": desired("app.service", LAUNCHED, description="new"),
        "new.service": desired("new.service", LOADED),
    }
    for task in plan_agent_tasks(wanted, current):
        apply_task(current, task, wanted.get(task.unit))
    assert current == {
        "app.service": LocalUnit("app.service", wanted["app.service"].hash, LAUNCHED),
        "new.service": LocalUnit("new.service", wanted["new.service"].hash, LOADED),
    }
    assert plan_agent_tasks(wanted, current) == []

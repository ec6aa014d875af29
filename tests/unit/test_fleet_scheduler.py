"""The engine's decisions as pure functions over cluster snapshots."""

from __future__ import annotations

import pytest

from provisioner.guest.fleet.model import (
    INACTIVE,
    LAUNCHED,
    LOADED,
    Job,
    MachineState,
    current_job_state,
    make_job,
)
from provisioner.guest.fleet.scheduler import (
    SCHEDULE,
    UNSCHEDULE,
    AgentState,
    ClusterSnapshot,
    EngineTask,
    able_to_run,
    machine_loads,
    plan_engine_tasks,
    unschedulable_reasons,
)
from provisioner.guest.fleet.unitfile import parse_unit_file

pytestmark = pytest.mark.unit

A = MachineState("a" * 32, "10.0.0.1", (("region", "east"),))
B = MachineState("b" * 32, "10.0.0.2", (("region", "east"),))
C = MachineState("c" * 32, "10.0.0.3", (("region", "west"),))


def job(
    name: str, xfleet: str = "", state: str = LAUNCHED, target: MachineState | None = None
) -> Job:
    text = "[Service]\nExecStart=/bin/true\n" + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else "")
    return make_job(name, parse_unit_file(text), state, target.id if target else None)


def apply(snapshot: ClusterSnapshot, tasks: list[EngineTask]) -> dict[str, str]:
    """The schedule after applying the tasks (unit -> machine ID)."""
    schedule = {j.name: j.target_machine for j in snapshot.jobs if j.target_machine}
    for task in tasks:
        if task.kind == SCHEDULE:
            schedule[task.unit] = task.machine_id
        else:
            assert schedule.get(task.unit) == task.machine_id
            del schedule[task.unit]
    return {k: v for k, v in schedule.items() if v}


def settle(machines: tuple[MachineState, ...], jobs: list[Job]) -> dict[str, str]:
    """Run engine passes until nothing changes; the final schedule."""
    schedule = {j.name: j.target_machine for j in jobs if j.target_machine}
    for _ in range(10):
        current = [make_job(j.name, j.unit, j.target_state, schedule.get(j.name)) for j in jobs]
        snapshot = ClusterSnapshot(machines, tuple(current))
        tasks = plan_engine_tasks(snapshot)
        if not tasks:
            return schedule
        schedule = apply(snapshot, tasks)
    raise AssertionError("the engine did not settle within 10 passes")


def test_least_loaded_with_ties_broken_by_machine_id() -> None:
    snapshot = ClusterSnapshot((C, B, A), (job("one.service"), job("two.service")))
    tasks = plan_engine_tasks(snapshot)
    assert tasks == [
        EngineTask(SCHEDULE, "one.service", A.id, "target state launched and unit not scheduled"),
        EngineTask(SCHEDULE, "two.service", B.id, "target state launched and unit not scheduled"),
    ]


def test_least_loaded_prefers_the_emptiest_machine() -> None:
    jobs = (
        job("x1.service", target=A),
        job("x2.service", target=A),
        job("y1.service", target=B),
        job("new.service"),
    )
    assert (
        apply(
            ClusterSnapshot((A, B, C), jobs), plan_engine_tasks(ClusterSnapshot((A, B, C), jobs))
        )["new.service"]
        == C.id
    )


def test_inactive_units_are_not_scheduled_and_are_unscheduled() -> None:
    snapshot = ClusterSnapshot(
        (A,), (job("idle.service", state=INACTIVE), job("was.service", state=INACTIVE, target=A))
    )
    assert plan_engine_tasks(snapshot) == [
        EngineTask(UNSCHEDULE, "was.service", A.id, "target state inactive")
    ]


def test_loaded_units_are_scheduled_too() -> None:
    snapshot = ClusterSnapshot((A,), (job("l.service", state=LOADED),))
    assert apply(snapshot, plan_engine_tasks(snapshot)) == {"l.service": A.id}


def test_units_of_a_dead_machine_are_rescheduled_in_the_same_pass() -> None:
    jobs = (job("web.service", target=B), job("db.service", target=A))
    snapshot = ClusterSnapshot((A, C), jobs)
    tasks = plan_engine_tasks(snapshot)
    assert tasks[0] == EngineTask(
        UNSCHEDULE, "web.service", B.id, f"target Machine({B.id}) went away"
    )
    # db.service stays; web.service lands on the empty machine, no churn elsewhere.
    assert apply(snapshot, tasks) == {"db.service": A.id, "web.service": C.id}
    assert [t.unit for t in tasks] == ["web.service", "web.service"]


def test_conflicting_units_spread_and_the_rest_stay_unscheduled() -> None:
    jobs = [job(f"conflict.{i}.service", "Conflicts=conflict*") for i in range(5)]
    schedule = settle((A, B, C), jobs)
    assert sorted(schedule.values()) == sorted([A.id, B.id, C.id])
    reasons = unschedulable_reasons(
        ClusterSnapshot(
            (A, B, C),
            tuple(make_job(j.name, j.unit, j.target_state, schedule.get(j.name)) for j in jobs),
        )
    )
    assert reasons == {
        "conflict.3.service": "no agents able to run job",
        "conflict.4.service": "no agents able to run job",
    }


def test_conflicts_apply_in_both_directions() -> None:
    existing = job("db.service", target=A)
    declaring = job("web.service", "Conflicts=db.service")
    agent = AgentState(A, {"db.service": existing})
    assert able_to_run(agent, declaring) == (
        UNSCHEDULE,
        "found conflict with locally-scheduled Unit(db.service)",
    )
    reverse = AgentState(A, {"web.service": job("web.service", "Conflicts=db*", target=A)})
    assert able_to_run(reverse, job("db.service"))[0] == UNSCHEDULE
    # A unit never conflicts with itself.
    itself = AgentState(A, {"web.service": declaring})
    assert able_to_run(itself, job("web.service", "Conflicts=web*"))[0] == SCHEDULE


def test_machine_id_full_or_short() -> None:
    assert settle((A, B, C), [job("pin.service", f"MachineID={C.id}")]) == {"pin.service": C.id}
    assert settle((A, B, C), [job("pin.service", f"MachineID={B.id[:8]}")]) == {"pin.service": B.id}
    assert settle((A, B), [job("pin.service", f"MachineID={C.id}")]) == {}


def test_metadata_requirements() -> None:
    west = job("w.service", "MachineMetadata=region=west")
    either = job("e.service", 'MachineMetadata="region=west" "region=east"')
    none = job("n.service", "MachineMetadata=region=mars")
    schedule = settle((A, B, C), [west, either, none])
    assert schedule["w.service"] == C.id
    assert schedule["e.service"] == A.id
    assert "n.service" not in schedule
    agent = AgentState(A)
    assert able_to_run(agent, none) == (UNSCHEDULE, "local Machine metadata insufficient")


def test_metadata_keys_are_anded() -> None:
    both = job("b.service", "MachineMetadata=region=east\nMachineMetadata=disk=ssd")
    ssd = MachineState("d" * 32, "10.0.0.4", (("disk", "ssd"), ("region", "east")))
    assert settle((A, B, C, ssd), [both]) == {"b.service": ssd.id}


def test_machineof_follows_its_peer_whatever_the_name_order() -> None:
    peer = job("zz-app.service")
    follower = job("aa-side.service", "MachineOf=zz-app.service")
    filler = job("filler.service", target=A)
    schedule = settle((A, B), [peer, follower, filler])
    assert schedule["zz-app.service"] == B.id
    assert schedule["aa-side.service"] == B.id


def test_machineof_without_a_scheduled_peer_is_unschedulable() -> None:
    follower = job("side.service", "MachineOf=missing.service")
    assert settle((A, B), [follower]) == {}
    agent = AgentState(A)
    assert able_to_run(agent, follower) == (
        UNSCHEDULE,
        "required peer Unit(missing.service) is not scheduled locally",
    )


def test_machineof_pair_moves_together_when_the_machine_dies() -> None:
    jobs = [
        job("app.service", target=A),
        job("side.service", "MachineOf=app.service", target=A),
        job("other.service", target=B),
    ]
    schedule = settle((B, C), jobs)
    assert schedule["app.service"] == schedule["side.service"] == C.id
    assert schedule["other.service"] == B.id


def test_follower_leaves_when_its_peer_is_stopped() -> None:
    jobs = [
        job("app.service", state=INACTIVE, target=A),
        job("side.service", "MachineOf=app.service", target=A),
    ]
    assert settle((A, B), jobs) == {}


def test_replaces_moves_the_replaced_unit_to_another_machine() -> None:
    jobs = [
        job("old.service", target=A),
        job("new.service", "Replaces=old.service\nMachineMetadata=region=east"),
        job("busy.service", target=B),
    ]
    snapshot = ClusterSnapshot((A, B), tuple(jobs))
    tasks = plan_engine_tasks(snapshot)
    schedule = apply(snapshot, tasks)
    # new.service lands on A (least loaded tie by ID), old.service is moved to B.
    assert schedule == {"new.service": A.id, "old.service": B.id, "busy.service": B.id}
    assert EngineTask(UNSCHEDULE, "old.service", A.id, f"unit replaced on Machine({A.id})") in tasks


def test_replaced_unit_stays_unscheduled_without_another_machine() -> None:
    jobs = [job("old.service", target=A), job("new.service", "Replaces=old.service")]
    schedule = settle((A,), jobs)
    assert schedule == {"new.service": A.id}


def test_circular_replaces_are_ignored() -> None:
    agent = AgentState(A, {"one.service": job("one.service", "Replaces=two.service", target=A)})
    assert able_to_run(agent, job("two.service", "Replaces=one.service"))[0] == SCHEDULE
    schedule = settle(
        (A,),
        [
            job("one.service", "Replaces=two.service"),
            job("two.service", "Replaces=one.service"),
        ],
    )
    assert schedule == {"one.service": A.id, "two.service": A.id}


def test_global_units_count_towards_load_but_are_not_scheduled() -> None:
    everywhere = job("agent.service", "Global=true")
    east_only = job("east.service", "Global=true\nMachineMetadata=region=east")
    snapshot = ClusterSnapshot((A, B, C), (everywhere, east_only, job("web.service")))
    assert machine_loads(snapshot) == {A.id: 2, B.id: 2, C.id: 1}
    assert apply(snapshot, plan_engine_tasks(snapshot)) == {"web.service": C.id}


def test_global_unit_with_a_stale_target_is_ignored() -> None:
    snapshot = ClusterSnapshot((A,), (job("g.service", "Global=true", target=A),))
    assert plan_engine_tasks(snapshot) == []


def test_no_machines_means_nothing_is_scheduled() -> None:
    snapshot = ClusterSnapshot((), (job("lonely.service"),))
    assert plan_engine_tasks(snapshot) == []
    assert unschedulable_reasons(snapshot) == {"lonely.service": "zero agents available"}


def test_current_job_state_derivation() -> None:
    assert current_job_state(None, True, None) == INACTIVE
    assert current_job_state("m", False, "m") == INACTIVE
    assert current_job_state("m", True, None) == LOADED
    assert current_job_state("m", True, "other") == LOADED
    assert current_job_state("m", True, "m") == LAUNCHED

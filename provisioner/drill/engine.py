"""Runs the drill's scenarios: healthy? -> write -> inject -> observe -> recover -> check.

Side effects go through two seams: an :class:`Injector` (faults on the lab's nodes,
or on local etcd processes in the tests) and a :class:`DrillClient`. A writer thread
puts a sequence of keys through every member's endpoint in turn and records every
attempt in the :class:`Ledger`; an observer thread samples the leader. The figures
and the verdict are pure functions of what they recorded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from provisioner.drill.client import DrillClient
from provisioner.drill.ledger import Attempt, Found, Ledger, Loss, lost_writes
from provisioner.drill.plan import Fault, Scenario, victims
from provisioner.drill.timeline import (
    Figures,
    LeaderSample,
    Phases,
    figures,
    leader_elected_during_fault,
)
from provisioner.drill.verdict import Evidence, Rule, judge
from provisioner.errors import LabError

PREFIX = "/lab/drill/"


class Injector(Protocol):
    def unavailable(self, fault: Fault) -> str | None:
        """Why ``fault`` cannot be injected here (the scenario is skipped), or None."""

    def inject(self, fault: Fault, nodes: Sequence[str]) -> None: ...

    def recover(self, fault: Fault, nodes: Sequence[str]) -> None:
        """Undo ``inject``; returns once the nodes run again (they may still catch up)."""


class FleetProbe(Protocol):
    def launch(self, scenario: str) -> str:
        """Start a unit for the scenario; its name."""

    def copies(self, units: Sequence[str]) -> dict[str, int]:
        """How many machines run each unit now."""

    def remove(self, units: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Settings:
    keys: int = 50  # acknowledged writes before the fault, and again after recovery
    interval: float = 0.05  # between two puts
    sample_every: float = 0.2  # leader samples
    hold: float = 5.0  # the fault lasts at least this long
    deadline: float = 120.0  # for each wait: healthy, writable, caught up
    keep_keys: bool = False  # leave the scenario's keys in etcd afterwards


@dataclass
class ScenarioResult:
    scenario: Scenario
    skipped: str | None = None
    error: str | None = None
    leader_before: str | None = None
    victims: tuple[str, ...] = ()
    figures: Figures | None = None
    rules: list[Rule] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    losses: list[Loss] = field(default_factory=list)
    evidence: Evidence | None = None  # what the rules were judged on

    @property
    def ok(self) -> bool:
        return self.error is None and all(rule.ok for rule in self.rules)


Clock = Callable[[], float]


def _wait(what: str, done: Callable[[], bool], deadline: float, pause: float = 0.2) -> None:
    end = time.monotonic() + deadline
    while not done():
        if time.monotonic() > end:
            raise LabError(f"gave up after {deadline:.0f}s waiting for {what}")
        time.sleep(pause)


class _Recorder:
    """The writer and observer threads of one scenario."""

    def __init__(
        self, client: DrillClient, prefix: str, label: str, settings: Settings, clock: Clock
    ) -> None:
        self.client, self.prefix, self.label = client, prefix, label
        self.settings, self.clock = settings, clock
        self.ledger = Ledger()
        self.samples: list[LeaderSample] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, name="drill-writer", daemon=True),
            threading.Thread(target=self._observe, name="drill-observer", daemon=True),
        ]

    def __enter__(self) -> _Recorder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _write(self) -> None:
        members, seq = self.client.members, 0
        while not self._stop.is_set():
            member = members[seq % len(members)]
            key, value = f"{self.prefix}{seq:08d}", f"{self.label}-{seq}-via-{member}"
            started = self.clock()
            revision, error = None, ""
            try:
                revision = self.client.put(member, key, value)
            except LabError as exc:
                error = str(exc)
            self.ledger.record(Attempt(key, value, member, started, self.clock(), revision, error))
            seq += 1
            self._stop.wait(self.settings.interval)

    def _observe(self) -> None:
        while not self._stop.is_set():
            leader = self.client.leader()
            self.samples.append(LeaderSample(self.clock(), leader))
            self._stop.wait(self.settings.sample_every)

    def acked_since(self, since: float) -> int:
        return sum(1 for a in list(self.ledger.attempts) if a.acknowledged and a.started >= since)

    def leader_other_than(self, leader: str | None, since: float) -> bool:
        return any(s.at >= since and s.leader not in (None, leader) for s in list(self.samples))


def wait_healthy(client: DrillClient, deadline: float) -> str:
    """Every member answers healthy and one leads; the leader."""
    found: list[str] = []

    def ready() -> bool:
        if not all(client.answers(m) for m in client.members):
            return False
        leader = client.leader()
        found[:] = [leader] if leader else []
        return bool(found)

    _wait(f"every etcd member ({', '.join(client.members)}) healthy with a leader", ready, deadline)
    return found[0]


def collect_reads(client: DrillClient, prefix: str) -> dict[str, dict[str, Found]]:
    """The prefix read through every member, linearizable and serializable (the
    member's own copy); a member that does not answer returns nothing."""
    reads: dict[str, dict[str, Found]] = {}
    for member in client.members:
        for serializable in (False, True):
            reader = f"{member} {'serializable' if serializable else 'linearizable'}"
            try:
                reads[reader] = client.read_prefix(member, prefix, serializable=serializable)
            except LabError:
                reads[reader] = {}
    return reads


def check_reads(
    client: DrillClient, prefix: str, acked: Sequence[Attempt], deadline: float
) -> list[Loss]:
    """The acknowledged writes some read lacks, once every member has caught up or
    ``deadline`` seconds have passed (a restarted member's own copy lags a little)."""
    end = time.monotonic() + deadline
    while True:
        losses = lost_writes(acked, collect_reads(client, prefix))
        if not losses or time.monotonic() > end:
            return losses
        time.sleep(0.5)


def wait_fleet(fleet: FleetProbe, units: Sequence[str], deadline: float) -> dict[str, int]:
    """How many machines run each unit, once each runs on exactly one or at ``deadline``
    (fleet reschedules a unit of a lost machine only after the machine's TTL)."""
    end = time.monotonic() + deadline
    while True:
        copies = fleet.copies(units)
        if all(n == 1 for n in copies.values()) or time.monotonic() > end:
            return copies
        time.sleep(2.0)


def _fault(
    scenario: Scenario,
    injector: Injector,
    nodes: Sequence[str],
    recorder: _Recorder,
    leader: str,
) -> Phases:
    """Inject, observe, recover, while ``recorder`` writes and watches. An injected
    fault is always undone, even when the drill fails or is interrupted on the way."""
    settings, clock = recorder.settings, recorder.clock
    _wait(
        f"{settings.keys} acknowledged writes",
        lambda: recorder.acked_since(0.0) >= settings.keys,
        settings.deadline,
    )
    inject_started = clock()
    recovered = False
    try:
        injector.inject(scenario.fault, nodes)
        inject_ended = clock()
        time.sleep(settings.hold)
        if not scenario.stops_writes:

            def settled() -> bool:
                writable = recorder.acked_since(inject_ended) > 0
                return writable and (
                    not scenario.elects or recorder.leader_other_than(leader, inject_started)
                )

            with contextlib.suppress(LabError):  # the verdict says what did not happen
                _wait("writes again during the fault", settled, settings.deadline)
        recover_started = clock()
        injector.recover(scenario.fault, nodes)
        recovered = True
    finally:
        if not recovered:
            with contextlib.suppress(LabError):
                injector.recover(scenario.fault, nodes)
    recover_ended = clock()
    with contextlib.suppress(LabError):  # the verdict says whether writes resumed
        _wait(
            f"{settings.keys} acknowledged writes after recovery",
            lambda: recorder.acked_since(recover_started) >= settings.keys,
            settings.deadline,
        )
    return Phases(inject_started, inject_ended, recover_started, recover_ended)


def run_scenario(
    scenario: Scenario,
    client: DrillClient,
    injector: Injector,
    settings: Settings,
    *,
    run_id: str,
    fleet: FleetProbe | None = None,
    clock: Clock = time.monotonic,
) -> ScenarioResult:
    result = ScenarioResult(scenario)
    reason = injector.unavailable(scenario.fault)
    if reason is not None:
        result.skipped = reason
        return result
    leader = wait_healthy(client, settings.deadline)
    result.leader_before = leader
    result.victims = victims(scenario.target, client.members, leader)
    units = [fleet.launch(scenario.name)] if fleet else []
    prefix = f"{PREFIX}{run_id}/{scenario.name}/"
    try:
        with _Recorder(client, prefix, scenario.name, settings, clock) as recorder:
            result.ledger = recorder.ledger
            phases = _fault(scenario, injector, result.victims, recorder, leader)
        result.figures = figures(list(result.ledger.attempts), recorder.samples, leader, phases)
        answering = {m: client.answers(m) for m in client.members}
        result.losses = check_reads(client, prefix, result.ledger.acknowledged, settings.deadline)
        copies = wait_fleet(fleet, units, settings.deadline) if fleet else None
        result.evidence = Evidence(
            result.figures,
            result.losses,
            answering,
            leader_elected_during_fault(recorder.samples, leader, phases),
            copies,
        )
        result.rules = judge(scenario, result.evidence)
    finally:
        if fleet:
            fleet.remove(units)
        if not settings.keep_keys:
            with contextlib.suppress(LabError):
                client.delete_prefix(prefix)
    return result


def run_drill(
    scenarios: Sequence[Scenario],
    client: DrillClient,
    injector: Injector,
    settings: Settings,
    *,
    run_id: str,
    fleet: FleetProbe | None = None,
    report: Callable[[ScenarioResult], None] = lambda _: None,
) -> list[ScenarioResult]:
    """Every scenario in turn; a scenario that cannot finish (the cluster never got
    healthy, a fault could not be injected or undone) ends the drill there."""
    results = []
    for scenario in scenarios:
        try:
            result = run_scenario(scenario, client, injector, settings, run_id=run_id, fleet=fleet)
        except LabError as exc:
            result = ScenarioResult(scenario, error=str(exc))
        results.append(result)
        report(result)
        if result.error:
            break
    return results


def summary(results: Sequence[ScenarioResult]) -> Mapping[str, int]:
    return {
        "scenarios": len(results),
        "passed": sum(1 for r in results if r.ok and not r.skipped),
        "skipped": sum(1 for r in results if r.skipped),
        "failed": sum(1 for r in results if not r.ok),
    }

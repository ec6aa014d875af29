"""The rules a scenario must keep, judged from what the drill recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioner.drill.ledger import Loss
from provisioner.drill.plan import Scenario
from provisioner.drill.timeline import Figures


@dataclass(frozen=True)
class Rule:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Evidence:
    """Everything the verdict needs, gathered by the engine."""

    figures: Figures
    losses: Sequence[Loss]
    answering: Mapping[str, bool]  # member -> answered after recovery
    new_leader_during_fault: str | None
    fleet_units: Mapping[str, int] | None  # unit -> copies running; None: not checked


def judge(scenario: Scenario, evidence: Evidence) -> list[Rule]:
    f = evidence.figures
    rules = []
    silent = sorted(name for name, ok in evidence.answering.items() if not ok)
    rules.append(
        Rule(
            "every member answers",
            not silent,
            f"no answer from {', '.join(silent)}"
            if silent
            else f"{len(evidence.answering)} answer",
        )
    )
    lost = evidence.losses
    detail = f"{f.acked} acknowledged, {len({loss.key for loss in lost})} lost"
    if lost:
        first = lost[0]
        found = "missing" if first.found is None else f"found {first.found}"
        detail += f" (e.g. {first.key} on {first.reader}: {found}, expected {first.expected!r})"
    rules.append(Rule("no acknowledged write lost", not lost, detail))
    if scenario.stops_writes:
        rules.append(
            Rule(
                "writes stop without a quorum",
                f.acked_during_fault == 0,
                f"{f.acked_during_fault} acknowledged while a majority was gone",
            )
        )
    else:
        rules.append(
            Rule(
                "writable while the fault lasts",
                f.acked_during_fault > 0,
                f"{f.acked_during_fault} acknowledged during the fault",
            )
        )
    if scenario.elects:
        leader = evidence.new_leader_during_fault
        rules.append(
            Rule(
                "a new leader while the fault lasts",
                leader is not None,
                f"{leader} leads" if leader else "no other member took the lead",
            )
        )
    rules.append(
        Rule(
            "writes resume after recovery",
            f.acked_after_recovery > 0,
            f"{f.acked_after_recovery} acknowledged after recovery",
        )
    )
    if evidence.fleet_units is not None:
        wrong = {u: n for u, n in sorted(evidence.fleet_units.items()) if n != 1}
        rules.append(
            Rule(
                "fleet runs each drill unit exactly once",
                not wrong,
                ", ".join(f"{u}: {n} running" for u, n in wrong.items())
                or f"{len(evidence.fleet_units)} unit(s) running once",
            )
        )
    return rules

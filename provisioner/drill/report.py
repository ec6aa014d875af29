"""The drill's table per scenario and its JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from provisioner.drill.engine import ScenarioResult, summary

LOSSES_SHOWN = 20


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def render_scenario(result: ScenarioResult) -> str:
    s = result.scenario
    head = f"{s.name} ({s.etcd_case})"
    if result.skipped:
        return f"{head}: skipped: {result.skipped}"
    lines = [head]
    if result.victims:
        lines.append(
            f"  leader before: {result.leader_before}; fault on: {', '.join(result.victims)}"
        )
    if result.error:
        lines.append(f"  FAILED: {result.error}")
    f = result.figures
    if f is not None:
        rows = [
            ("time to detect", seconds(f.detect)),
            ("time to new leader", seconds(f.new_leader)),
            ("time to writable", seconds(f.writable)),
            ("writable after recovery", seconds(f.writable_after_recovery)),
            ("writes acknowledged", str(f.acked)),
            ("writes failed (not acknowledged)", str(f.failed)),
            ("writes lost", str(len({loss.key for loss in result.losses}))),
        ]
        width = max(len(name) for name, _ in rows)
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    for rule in result.rules:
        lines.append(f"  {'ok  ' if rule.ok else 'FAIL'} {rule.name}: {rule.detail}")
    return "\n".join(lines)


def render_summary(results: Sequence[ScenarioResult]) -> str:
    counts = summary(results)
    return (
        f"drill: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped of {counts['scenarios']}"
    )


def drill_json(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    return {
        "summary": dict(summary(results)),
        "scenarios": [_scenario_json(r) for r in results],
    }


def _scenario_json(result: ScenarioResult) -> dict[str, Any]:
    s = result.scenario
    return {
        "name": s.name,
        "etcd_case": s.etcd_case,
        "fault": s.fault.value,
        "target": s.target.value,
        "ok": result.ok,
        "skipped": result.skipped,
        "error": result.error,
        "leader_before": result.leader_before,
        "victims": list(result.victims),
        "figures": asdict(result.figures) if result.figures else None,
        "writes_lost": len({loss.key for loss in result.losses}),
        "losses": [asdict(loss) for loss in result.losses[:LOSSES_SHOWN]],
        "rules": [asdict(rule) for rule in result.rules],
    }

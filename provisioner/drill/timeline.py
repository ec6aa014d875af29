"""What the drill saw while a scenario ran, and the figures taken from it.

Times are seconds on the drill's monotonic clock; figures are seconds since the
fault was injected (``inject_started``), None when the thing never happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.drill.ledger import Attempt


@dataclass(frozen=True)
class LeaderSample:
    at: float
    leader: str | None  # None: no member names a leader (or none answers)


@dataclass(frozen=True)
class Phases:
    inject_started: float
    inject_ended: float
    recover_started: float
    recover_ended: float


@dataclass(frozen=True)
class Figures:
    detect: float | None  # first failed write or leader change seen
    new_leader: float | None  # first sample naming a leader other than the one before
    writable: float | None  # first write acknowledged after the first failed one (0: none failed)
    writable_after_recovery: float | None  # since recovery started
    acked: int
    failed: int
    acked_during_fault: int  # started after the fault was in, ended before recovery began
    acked_after_recovery: int


def _first_failure(attempts: Sequence[Attempt], since: float) -> Attempt | None:
    failed = [a for a in attempts if not a.acknowledged and a.ended >= since]  # in flight too
    return min(failed, key=lambda a: a.ended, default=None)


def figures(
    attempts: Sequence[Attempt],
    samples: Sequence[LeaderSample],
    leader_before: str | None,
    phases: Phases,
) -> Figures:
    start = phases.inject_started
    acked = [a for a in attempts if a.acknowledged]
    first_failure = _first_failure(attempts, start)
    changed = [s.at for s in samples if s.at >= start and s.leader != leader_before]
    seen = [t for t in [*changed, first_failure.ended if first_failure else None] if t is not None]
    detect = min(seen) - start if seen else None
    new = [s.at for s in samples if s.at >= start and s.leader not in (None, leader_before)]
    new_leader = min(new) - start if new else None
    if first_failure is None:
        writable: float | None = 0.0
    else:
        after = [a.ended for a in acked if a.started >= first_failure.ended]
        writable = min(after) - start if after else None
    resumed = [a.ended for a in acked if a.started >= phases.recover_started]
    return Figures(
        detect=detect,
        new_leader=new_leader,
        writable=writable,
        writable_after_recovery=min(resumed) - phases.recover_started if resumed else None,
        acked=len(acked),
        failed=len(attempts) - len(acked),
        acked_during_fault=sum(
            1
            for a in acked
            if a.started >= phases.inject_ended and a.ended <= phases.recover_started
        ),
        acked_after_recovery=len(resumed),
    )


def leader_elected_during_fault(
    samples: Sequence[LeaderSample], leader_before: str | None, phases: Phases
) -> str | None:
    """The first leader other than ``leader_before`` seen while the fault lasted."""
    for sample in samples:
        inside = phases.inject_started <= sample.at <= phases.recover_started
        if inside and sample.leader not in (None, leader_before):
            return sample.leader
    return None

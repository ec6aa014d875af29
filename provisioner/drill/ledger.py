"""Every write the drill's client attempted, and the acknowledged ones it must find again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    """One put: through which endpoint, when (seconds on the drill's clock), and its
    answer. ``revision`` is the store revision etcd acknowledged it with; None when
    the put failed or timed out (then it may or may not have been committed)."""

    key: str
    value: str
    endpoint: str
    started: float
    ended: float
    revision: int | None
    error: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.revision is not None


@dataclass(frozen=True)
class Found:
    """A key as one member returned it."""

    value: str
    mod_revision: int


@dataclass
class Ledger:
    attempts: list[Attempt] = field(default_factory=list)

    def record(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    @property
    def acknowledged(self) -> list[Attempt]:
        return [a for a in self.attempts if a.acknowledged]

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.acknowledged]


@dataclass(frozen=True)
class Loss:
    """An acknowledged write a member's read did not return as acknowledged."""

    key: str
    reader: str  # e.g. "core-01 linearizable"
    expected: str
    found: str | None  # None: the key is missing
    revision: int


def lost_writes(acked: Iterable[Attempt], reads: Mapping[str, Mapping[str, Found]]) -> list[Loss]:
    """Each acknowledged write that a read (reader name -> the keys it returned) lacks,
    or returns with another value or another revision."""
    losses = []
    for reader, keys in sorted(reads.items()):
        for attempt in acked:
            if attempt.revision is None:
                continue  # not acknowledged: it may or may not be there
            found = keys.get(attempt.key)
            if found is None:
                losses.append(Loss(attempt.key, reader, attempt.value, None, attempt.revision))
            elif found.value != attempt.value or found.mod_revision != attempt.revision:
                shown = f"{found.value!r} at revision {found.mod_revision}"
                losses.append(Loss(attempt.key, reader, attempt.value, shown, attempt.revision))
    return losses

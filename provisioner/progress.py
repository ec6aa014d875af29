"""Progress per node and phase: a live table on a terminal, timestamped lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

Status = Literal["running", "ok", "failed", "skipped"]
LAB = "lab"  # the row for steps that are not about one node

_STYLE = {"running": "yellow", "ok": "green", "failed": "red", "skipped": "dim"}


@dataclass
class Row:
    subject: str
    phase: str
    status: Status
    detail: str
    started: float
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


class Progress(Protocol):
    def update(self, subject: str, phase: str, status: Status, detail: str = "") -> None: ...

    def close(self) -> None: ...


class _Rows:
    """What every reporter keeps: one row per subject, with its phase times."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.phase_times: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def record(self, subject: str, phase: str, status: Status, detail: str) -> Row:
        now = time.monotonic()
        with self.lock:
            row = self.rows.get(subject)
            if row is None or row.phase != phase:
                row = Row(subject, phase, status, detail, started=now)
                self.rows[subject] = row
            row.status = status
            row.detail = detail
            if status != "running":
                row.finished = now
                self.phase_times[(subject, phase)] = row.elapsed
            return row


class PlainProgress(_Rows):
    """``HH:MM:SS subject phase: status (detail)`` lines, for logs and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr

    def update(self, subject: str, phase: str, status: Status, detail: str = "") -> None:
        row = self.record(subject, phase, status, detail)
        stamp = time.strftime("%H:%M:%S")
        took = f" after {row.elapsed:.1f}s" if status != "running" else ""
        extra = f": {detail}" if detail else ""
        line = f"{stamp} {subject:<10} {phase:<12} {status}{took}{extra}\n"
        with self.lock:  # one write per line: node threads report at the same moment
            self.stream.write(line)
            self.stream.flush()

    def close(self) -> None:
        return None


class RichProgress(_Rows):
    """A live table: one line per node with its current phase."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for column in ("node", "phase", "status", "time", "detail"):
            table.add_column(column)
        for row in self.rows.values():
            style = _STYLE[row.status]
            table.add_row(
                row.subject,
                row.phase,
                f"[{style}]{row.status}[/]",
                f"{row.elapsed:5.1f}s",
                row.detail,
            )
        return table

    def update(self, subject: str, phase: str, status: Status, detail: str = "") -> None:
        self.record(subject, phase, status, detail)
        with self.lock:
            self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()


def make_progress(stream: TextIO | None = None) -> PlainProgress | RichProgress:
    target = stream or sys.stderr
    if target.isatty():
        return RichProgress(Console(file=target))
    return PlainProgress(target)


def summary_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    return table

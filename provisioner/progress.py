"""Progress as one kind of event, and the consumers that show or record it.

``lab up`` (per node and phase) and ``lab box build`` (per build step) both
report :class:`ProgressEvent` values; a consumer is any callable taking one.
The consumers here: plain timestamped lines (logs, CI), a live rich table (a
terminal), and JSON lines (one object per event, for programs). ``lab up``'s
consumers are fed by :class:`Progress`, which times each subject's phase;
the box build's by :class:`provisioner.box.buildlog.BuildLog`, which times its
steps, and its renderer lives with the box CLI.

Setting ``LAB_PROGRESS_JSONL`` to a file path makes :func:`make_progress` also
append every event to that file as a JSON line (``scripts/bench_up.py`` reads
``lab up``'s events that way); what the terminal shows does not change.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TextIO, get_args

from rich.console import Console
from rich.live import Live
from rich.table import Table

# running/ok/failed/skipped: where a phase is; info/warning: a note during one (box build)
Status = Literal["running", "ok", "failed", "skipped", "info", "warning"]
STATUSES: tuple[Status, ...] = get_args(Status)
LAB = "lab"  # the row for steps that are not about one node
JSONL_ENV = "LAB_PROGRESS_JSONL"

_STYLE = {
    "running": "yellow",
    "ok": "green",
    "failed": "red",
    "skipped": "dim",
    "info": "yellow",
    "warning": "yellow",
}


@dataclass(frozen=True)
class ProgressEvent:
    """One step of progress: ``subject`` (a node, ``lab``, a box) is in ``phase``, ``status``.

    ``elapsed`` is how long the subject has been in this phase (its whole
    duration once the status is no longer ``running``); ``at`` is when the
    event happened (seconds since the epoch).
    """

    subject: str
    phase: str
    status: Status
    detail: str = ""
    elapsed: float | None = None
    at: float = field(default_factory=time.time)

    @property
    def ended(self) -> bool:
        return self.status in ("ok", "failed", "skipped")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ProgressEvent:
        """The event :meth:`to_json` wrote; ValueError for anything else."""
        try:
            raw = json.loads(line)
            status = next(s for s in STATUSES if s == raw["status"])
            elapsed = raw["elapsed"]
            return cls(
                subject=str(raw["subject"]),
                phase=str(raw["phase"]),
                status=status,
                detail=str(raw["detail"]),
                elapsed=float(elapsed) if elapsed is not None else None,
                at=float(raw["at"]),
            )
        except (ValueError, TypeError, KeyError, StopIteration) as exc:
            raise ValueError(f"not a progress event: {line!r}") from exc


Consumer = Callable[[ProgressEvent], None]


def read_events(path: Path) -> list[ProgressEvent]:
    """The events a :class:`JsonLines` consumer wrote to ``path`` (none if it has no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [ProgressEvent.from_json(line) for line in text.splitlines() if line.strip()]


# --- consumers ----------------------------------------------------------------


def plain_line(event: ProgressEvent) -> str:
    """``HH:MM:SS subject phase status[ after N.Ns][: detail]``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    took = f" after {event.elapsed or 0.0:.1f}s" if event.status != "running" else ""
    extra = f": {event.detail}" if event.detail else ""
    return f"{stamp} {event.subject:<10} {event.phase:<12} {event.status}{took}{extra}\n"


class PlainLines:
    """Timestamped lines, for logs and CI; one write per line (nodes report at once)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        line = plain_line(event)
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


class JsonLines:
    """One JSON object per event (:meth:`ProgressEvent.to_json`), for programs."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        line = event.to_json() + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()


class LiveTable:
    """A live rich table: one line per subject with its current phase."""

    def __init__(self, console: Console) -> None:
        self.rows: dict[str, tuple[ProgressEvent, float]] = {}  # subject -> event, seen at
        self.lock = threading.Lock()
        self.live = Live(self._table(), console=console, refresh_per_second=4, transient=False)
        self.live.start()

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for column in ("node", "phase", "status", "time", "detail"):
            table.add_column(column)
        now = time.monotonic()
        for event, seen in self.rows.values():
            elapsed = event.elapsed or 0.0
            if event.status == "running":
                elapsed += now - seen
            style = _STYLE[event.status]
            table.add_row(
                event.subject,
                event.phase,
                f"[{style}]{event.status}[/]",
                f"{elapsed:5.1f}s",
                event.detail,
            )
        return table

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            self.rows[event.subject] = (event, time.monotonic())
            self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()


# --- lab up's producer --------------------------------------------------------


class Progress:
    """What ``lab up`` reports to: times each subject's phase and hands events on.

    A subject's phase starts with its first update; a later update of the same
    phase (a new detail) keeps that start.
    """

    def __init__(self, *consumers: Consumer, closers: Sequence[Callable[[], None]] = ()) -> None:
        self.consumers = consumers
        self.closers = tuple(closers)
        self.phase_times: dict[tuple[str, str], float] = {}
        self._started: dict[str, tuple[str, float]] = {}  # subject -> (phase, monotonic start)
        self._lock = threading.Lock()

    def update(self, subject: str, phase: str, status: Status, detail: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            current = self._started.get(subject)
            if current is None or current[0] != phase:
                current = (phase, now)
                self._started[subject] = current
            elapsed = now - current[1]
            event = ProgressEvent(subject, phase, status, detail, elapsed)
            if event.ended:
                self.phase_times[(subject, phase)] = elapsed
            for consume in self.consumers:  # in the order the events happened
                consume(event)

    def close(self) -> None:
        for close in self.closers:
            close()


class PlainProgress(Progress):
    """:class:`Progress` shown as :class:`PlainLines` on ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *more: Consumer) -> None:
        super().__init__(PlainLines(stream or sys.stderr), *more)


class RichProgress(Progress):
    """:class:`Progress` shown as a :class:`LiveTable`."""

    def __init__(self, console: Console | None = None, *more: Consumer) -> None:
        table = LiveTable(console or Console(stderr=True))
        super().__init__(table, *more, closers=(table.close,))


def jsonl_from_env() -> JsonLines | None:
    """:class:`JsonLines` appending to the file named by ``LAB_PROGRESS_JSONL``, if it is set.

    The caller closes it.
    """
    path = os.environ.get(JSONL_ENV)
    if not path:
        return None
    return JsonLines(Path(path).open("a", encoding="utf-8"))


def fan_out(consumers: Sequence[Consumer]) -> Consumer:
    """One consumer handing each event to every one of ``consumers``, in order."""

    def consume(event: ProgressEvent) -> None:
        for each in consumers:
            each(event)

    return consume


def make_progress(stream: TextIO | None = None) -> Progress:
    """A live table on a terminal, plain lines otherwise; JSON lines too when asked for."""
    target = stream or sys.stderr
    jsonl = jsonl_from_env()
    more: tuple[Consumer, ...] = (jsonl,) if jsonl else ()
    progress: Progress
    if target.isatty():
        progress = RichProgress(Console(file=target), *more)
    else:
        progress = PlainProgress(target, *more)
    if jsonl is not None:
        progress.closers += (jsonl.close,)
    return progress


# Wide enough for any summary table: rich would otherwise wrap or cut it at 80 columns.
UNLIMITED_WIDTH = 10_000


def table_console(stream: TextIO | None = None) -> Console:
    """Where summary tables go: on a terminal, a console of its width; anywhere else (a
    file, a pipe, a CI log), one as wide as the table needs, so no address or ID is cut."""
    target = stream or sys.stdout
    console = Console(file=target)
    if console.is_terminal:
        return console
    return Console(file=target, width=UNLIMITED_WIDTH)


def short_id(value: str | None, console: Console, length: int = 12) -> str:
    """An ID as a table shows it: its first ``length`` characters on a terminal, whole
    otherwise (``-`` for none)."""
    if not value:
        return "-"
    return value[:length] if console.is_terminal else value


def summary_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    return table

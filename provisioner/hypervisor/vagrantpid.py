"""The ``vagrant`` commands lab runs, recorded so that one left running is found again.

lab runs vagrant in a process group of its own (the terminal's Ctrl-C reaches lab
first; lab passes it on). When lab itself dies hard (SIGKILL, a lost terminal), that
vagrant keeps running and keeps Vagrant's machine locks (``flock``-ed files under
``~/.vagrant.d/data``, released only when the process holding them exits): the next
``vagrant up`` of the same machines fails with "another process is already executing
an action on the machine".

So every vagrant command lab starts is recorded in ``.lab/vagrant.<pid>.pid`` (its
pid, process group and start time, which tells a reused pid apart), and the record is
removed when the command ends. The lab verbs that run vagrant or remove what it makes
(``up``, ``scale``, ``destroy``) call :func:`stop_left_running` under the lab's lock
before anything else. Every vagrant command lab runs, runs under that lock, so a
vagrant of this lab that still runs then was left behind by a lab that died. It is
stopped as lab stops one on Ctrl-C: SIGINT to its group (Vagrant cleans up, e.g. a
half-created domain), SIGKILL after a grace period. A vagrant whose record was never
written (lab killed between starting it and writing) is found by what lab gives every
vagrant it runs: ``LAB_DRIVING_VAGRANT=1`` and the lab directory as working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from provisioner.background import read_json, write_json
from provisioner.errors import HostError, NotReady, WaitTimeout
from provisioner.waits import wait_for

RECORD_GLOB = "vagrant.*.pid"
DRIVEN_MARK = b"LAB_DRIVING_VAGRANT=1"  # in the environment of every vagrant lab runs
STOP_GRACE = 60.0  # for Vagrant's own cleanup after SIGINT, as on Ctrl-C
KILL_GRACE = 10.0
POLL = 0.2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VagrantRecord:
    """A vagrant command as lab started it."""

    pid: int
    pgid: int
    start: int  # clock ticks after boot (/proc/PID/stat, field 22): unique with the pid
    root: str  # the lab directory it runs in
    command: str  # "vagrant up core-04", for the messages


@dataclass(frozen=True)
class ProcessView:
    """A live process as /proc shows it now."""

    pid: int
    pgid: int
    start: int
    argv: tuple[str, ...]
    cwd: str | None  # None when it cannot be read
    lab_driven: bool  # DRIVEN_MARK in its environment


# --- pure: what /proc says, and whether it is the vagrant meant ---------------------


def parse_stat(text: str) -> tuple[str, int, int]:
    """State letter, process group and start time (clock ticks) from /proc/PID/stat.

    The command name (field 2) is in parentheses and may hold spaces and ``)``:
    the fields are counted from its last ``)``."""
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


def is_vagrant(argv: tuple[str, ...]) -> bool:
    """Vagrant's command line: ``/usr/bin/ruby /usr/bin/vagrant up ...`` (its Ruby
    launcher) or ``vagrant ...`` itself (``nice`` execs it, so it never shows)."""
    return any(Path(arg).name == "vagrant" for arg in argv[:2])


def same_vagrant(record: VagrantRecord, seen: ProcessView) -> bool:
    """Whether ``seen`` is still the vagrant ``record`` names, not a reused pid."""
    return (
        seen.pid == record.pid
        and seen.start == record.start
        and seen.pgid == record.pgid
        and is_vagrant(seen.argv)
        and seen.cwd == record.root
    )


def left_by_lab(seen: ProcessView, root: str) -> bool:
    """Whether ``seen`` leads a vagrant that lab started in the lab directory ``root``."""
    return seen.lab_driven and seen.pgid == seen.pid and is_vagrant(seen.argv) and seen.cwd == root


def record_name(pid: int) -> str:
    return RECORD_GLOB.replace("*", str(pid))


def parse_record(document: dict[str, Any] | None) -> VagrantRecord | None:
    """A record read back; None when it is not one (a half-written or foreign file)."""
    if document is None:
        return None
    try:
        return VagrantRecord(
            pid=int(document["pid"]),
            pgid=int(document["pgid"]),
            start=int(document["start"]),
            root=str(document["root"]),
            command=str(document["command"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


# --- /proc ---------------------------------------------------------------------------


def view(pid: int) -> ProcessView | None:
    """What /proc shows of ``pid``; None when it is gone or a zombie."""
    proc = Path("/proc") / str(pid)
    try:
        state, pgid, start = parse_stat((proc / "stat").read_text())
        argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except (OSError, IndexError, ValueError):
        return None
    if state in ("Z", "X"):
        return None
    try:
        cwd: str | None = str((proc / "cwd").readlink())
    except OSError:
        cwd = None
    try:
        lab_driven = DRIVEN_MARK in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        lab_driven = False
    return ProcessView(
        pid, pgid, start, tuple(a.decode(errors="replace") for a in argv), cwd, lab_driven
    )


def _live_views() -> list[ProcessView]:
    views = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (seen := view(int(entry.name))) is not None:
            views.append(seen)
    return views


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, group, _ = parse_stat((entry / "stat").read_text())
            if group == pgid and state not in ("Z", "X"):
                return True
    return False


# --- records -------------------------------------------------------------------------


def remember(state_dir: Path, pid: int, root: Path, command: str) -> Path | None:
    """Record the vagrant ``pid`` lab just started in ``root``; None if it already ended."""
    seen = view(pid)
    if seen is None:
        return None
    record = VagrantRecord(pid, seen.pgid, seen.start, str(root.resolve()), command)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / record_name(pid)
    write_json(path, asdict(record))
    return path


def forget(path: Path | None) -> None:
    """Remove a record once its vagrant has ended."""
    if path is not None:
        path.unlink(missing_ok=True)


# --- stopping one left running -------------------------------------------------------


def stop_left_running(state_dir: Path, root: Path, *, grace: float = STOP_GRACE) -> list[int]:
    """Stop every vagrant a dead lab left running in ``root``; their pids.

    Call it holding the lab's lock: every vagrant lab runs, runs under that lock, so
    one still running then has lost its lab. Records of vagrant commands that ended
    (or whose pid now belongs to another process) are removed silently."""
    lab_dir = str(root.resolve())
    targets: dict[int, str] = {}
    for path in sorted(state_dir.glob(RECORD_GLOB)):
        record = parse_record(read_json(path))
        seen = view(record.pid) if record is not None else None
        if record is not None and seen is not None and same_vagrant(record, seen):
            targets[record.pgid] = record.command
        else:
            path.unlink(missing_ok=True)
    for seen in _live_views():  # one whose record was never written
        if seen.pid not in targets and left_by_lab(seen, lab_dir):
            targets[seen.pid] = " ".join(("vagrant", *_verb(seen.argv)))
    for pgid, command in targets.items():
        stop_group(pgid, command, grace=grace)
        log.warning("stopped a %s left running by an interrupted lab (pid %d)", command, pgid)
        (state_dir / record_name(pgid)).unlink(missing_ok=True)
    return list(targets)


def _verb(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The words after ``vagrant`` in its command line, options left out."""
    for index, arg in enumerate(argv[:2]):
        if Path(arg).name == "vagrant":
            return tuple(a for a in argv[index + 1 :] if not a.startswith("-"))
    return ()


def stop_group(pgid: int, what: str, *, grace: float = STOP_GRACE) -> None:
    """SIGINT to the process group (Vagrant cleans up), SIGKILL after ``grace``;
    returns once no process of the group runs, HostError if one still does."""

    def gone() -> bool:
        if group_alive(pgid):
            raise NotReady(f"process group {pgid} still runs")
        return True

    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, KILL_GRACE)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(WaitTimeout):
            wait_for(what, f"pid {pgid} to exit", time.monotonic() + wait, gone, interval=POLL)
            return
    raise HostError(
        f"{what} (pid {pgid}), left running by an interrupted lab, did not exit after "
        "SIGINT and SIGKILL",
        hint=f"check it with `ps -g {pgid}`",
    )

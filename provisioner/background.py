"""Host processes lab runs in the background: where they keep state, how they are found
again and stopped, and whether an address is free for them.

The discovery service (one etcd per lab gateway) and the image registry (one
registry per host, one relay per lab gateway) share these. A process is lab's
when its command line says so (each service names its own directory in it), so
a stale pid file, or a process left running without one, is found the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.errors import LabError, NotReady, WaitTimeout
from provisioner.waits import wait_for

POLL = 0.1


def state_home(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/lab`` (default ``~/.local/state/lab``): lab's host-wide services."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", str(Path.home()))) / ".local" / "state"
    )
    return Path(base) / "lab"


def cmdline(pid: int) -> list[bytes] | None:
    """The arguments of a live process; None if it is gone (a zombie child of ours is reaped)."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return None
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return argv


def find_pids(ours: Callable[[list[bytes]], bool], first: int | None = None) -> list[int]:
    """Every live process whose arguments ``ours`` accepts; ``first`` (a pid file's) leads."""
    pids: list[int] = []
    if first is not None and first > 0:
        argv = cmdline(first)
        if argv is not None and ours(argv):
            pids.append(first)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in pids:
            argv = cmdline(int(entry.name))
            if argv is not None and ours(argv):
                pids.append(int(entry.name))
    return pids


def terminate(
    pid: int,
    alive: Callable[[int], bool],
    what: str,
    *,
    error: type[LabError] = LabError,
    timeout: float = 10.0,
) -> None:
    """SIGTERM, then SIGKILL; returns once ``alive(pid)`` is false. ``what`` names it."""

    def gone() -> bool:
        if alive(pid) or cmdline(pid) == [b""]:  # an exiting process: its sockets still open
            raise NotReady(f"pid {pid} still runs")
        return True

    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        with contextlib.suppress(WaitTimeout):
            wait_for(what, f"pid {pid} to exit", time.monotonic() + grace, gone, interval=POLL)
            return
    raise error(
        f"{what} pid {pid} did not exit after SIGTERM and SIGKILL",
        hint=f"check the process with `ps -p {pid}`",
    )


def read_json(path: Path) -> dict[str, Any] | None:
    """A pid file's JSON object, or None when it is missing or unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a pid file atomically (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(path)


def bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on now (in use, address not here), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def wait_bindable(host: str, port: int, timeout: float = 10.0) -> OSError | None:
    """:func:`bind_error` until the address is free or ``timeout`` passes: a process just
    stopped may hold its socket a moment longer (a Go program's other threads outlive
    its main one, which already shows as a zombie)."""
    deadline = time.monotonic() + timeout
    while (problem := bind_error(host, port)) is not None and time.monotonic() < deadline:
        time.sleep(POLL)
    return problem


def log_tail(log_file: Path, lines: int = 3, summary: Callable[[str], str] = str) -> str:
    """The last lines of a service's log, joined on one line."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(summary(line) for line in text.strip().splitlines()[-lines:])

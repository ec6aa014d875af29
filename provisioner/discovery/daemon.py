"""Running the discovery service as a background process for ``lab up``.

``run_service`` serves in the foreground and records itself in
``<state_dir>/discovery.pid``; ``ensure_running`` starts
``python -m provisioner.discovery serve`` detached (or reuses the healthy one
already serving that state directory) and ``stop_daemon`` ends it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import provisioner
from provisioner.discovery.client import Health, check_health
from provisioner.discovery.protocol import base_url
from provisioner.discovery.server import DEFAULT_WATCH_TIMEOUT, DiscoveryServer
from provisioner.errors import DiscoveryError

log = logging.getLogger(__name__)

PID_FILE: Final = "discovery.pid"
_POLL: Final = 0.1

# Processes this one started, so they are reaped and never reported as leaks.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class DaemonInfo:
    """The pid file: which process serves a state directory, and where."""

    pid: int
    url: str


class _TerminatedError(Exception):
    """SIGTERM arrived; unwinds ``serve_forever`` so the server cleans up."""


def pid_path(state_dir: Path) -> Path:
    return state_dir / PID_FILE


def read_pidfile(state_dir: Path) -> DaemonInfo | None:
    """The recorded daemon, or None when there is no readable pid file."""
    try:
        document = json.loads(pid_path(state_dir).read_text(encoding="utf-8"))
        return DaemonInfo(int(document["pid"]), str(document["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_pidfile(state_dir: Path, info: DaemonInfo) -> None:
    path = pid_path(state_dir)
    tmp = path.with_name(f".{PID_FILE}.{info.pid}")
    tmp.write_text(json.dumps({"pid": info.pid, "url": info.url}), encoding="utf-8")
    tmp.replace(path)


def _remove_pidfile(state_dir: Path, pid: int) -> None:
    info = read_pidfile(state_dir)
    if info is not None and info.pid == pid:
        pid_path(state_dir).unlink(missing_ok=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _TerminatedError(signum, frame)


def run_service(
    listen: tuple[str, int],
    state_dir: Path,
    public_url: str | None = None,
    *,
    watch_timeout: float = DEFAULT_WATCH_TIMEOUT,
) -> None:
    """Serve in the foreground until SIGTERM or Ctrl-C; keeps the pid file meanwhile."""
    state_dir = state_dir.resolve()
    server = DiscoveryServer(listen, state_dir, public_url, watch_timeout=watch_timeout)
    server.bind()
    pid = os.getpid()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _write_pidfile(state_dir, DaemonInfo(pid, server.url))
        server.serve_forever()
    except (_TerminatedError, KeyboardInterrupt):
        log.info("discovery service stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        _remove_pidfile(state_dir, pid)


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is an exited child of ours; True when it is gone."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _children[pid]
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live discovery service process (not a zombie, not reused)."""
    if pid <= 0 or _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc to look into: trust kill(0)
    return state != "Z" and b"provisioner.discovery" in cmdline


def _log_tail(log_file: Path, lines: int = 5) -> str:
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _wait_health(url: str, pid: int, deadline: float) -> Health | None:
    while True:
        health = check_health(url, timeout=min(2.0, max(0.2, deadline - time.monotonic())))
        if health is not None and health.pid == pid:
            return health
        if time.monotonic() >= deadline or not is_running(pid):
            return None
        time.sleep(_POLL)


def ensure_running(
    listen_host: str,
    port: int,
    state_dir: Path,
    log_file: Path,
    timeout: float = 15.0,
) -> str:
    """A healthy discovery service for ``state_dir`` on ``listen_host:port``; its base URL.

    Reuses the daemon recorded in the state directory when it answers on that
    address, else starts ``python -m provisioner.discovery serve`` detached
    (own session, output appended to ``log_file``) and waits for ``/health``.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    url = base_url(listen_host, port)
    deadline = time.monotonic() + timeout
    running = read_pidfile(state_dir)
    if running is not None and is_running(running.pid):
        if running.url != url:
            raise DiscoveryError(
                f"the discovery service for {state_dir} already runs at {running.url} "
                f"(pid {running.pid}), not at {url}",
                hint="stop it with `lab discovery stop` or use its address",
            )
        if _wait_health(url, running.pid, deadline) is not None:
            log.info("reusing discovery service pid %d at %s", running.pid, url)
            return url
        raise DiscoveryError(
            f"discovery service pid {running.pid} does not answer {url}/health within {timeout:g}s",
            hint=f"see {log_file}; stop it with `lab discovery stop`",
        )
    pid_path(state_dir).unlink(missing_ok=True)
    return _spawn(listen_host, port, state_dir, log_file, url, deadline, timeout)


def _spawn(
    listen_host: str,
    port: int,
    state_dir: Path,
    log_file: Path,
    url: str,
    deadline: float,
    timeout: float,
) -> str:
    listen = f"[{listen_host}]:{port}" if ":" in listen_host else f"{listen_host}:{port}"
    argv = [
        sys.executable,
        "-m",
        "provisioner.discovery",
        "serve",
        "--listen",
        listen,
        "--state-dir",
        str(state_dir),
    ]
    package_root = str(Path(provisioner.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _children[child.pid] = child
    log.info("started discovery service pid %d on %s", child.pid, url)
    if _wait_health(url, child.pid, deadline) is not None:
        return url
    status = child.poll()
    if status is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5)
        _children.pop(child.pid, None)
        raise DiscoveryError(
            f"discovery service did not answer {url}/health within {timeout:g}s",
            hint=f"see {log_file}",
        )
    _children.pop(child.pid, None)
    tail = _log_tail(log_file)
    raise DiscoveryError(
        f"discovery service exited with status {status} before answering on {url}"
        + (f": {tail}" if tail else ""),
        hint=f"see {log_file}",
    )


def stop_daemon(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the daemon serving ``state_dir``; False if none was running."""
    state_dir = state_dir.resolve()
    info = read_pidfile(state_dir)
    if info is None:
        return False
    if not is_running(info.pid):
        pid_path(state_dir).unlink(missing_ok=True)
        return False
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not is_running(info.pid):
                _remove_pidfile(state_dir, info.pid)
                log.info("stopped discovery service pid %d", info.pid)
                return True
            time.sleep(_POLL)
    raise DiscoveryError(
        f"discovery service pid {info.pid} did not exit after SIGTERM and SIGKILL",
        hint=f"check the process with `ps -p {info.pid}`",
    )

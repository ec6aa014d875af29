"""Helpers for tests that run real processes on loopback: free ports, deadlines, clean stops."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    detail: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Poll ``check`` until it returns something truthy; TimeoutError naming ``what``.

    ``detail`` is called when giving up, for what to add to the message (a log tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:g}s waiting for {what}"
            extra = detail() if detail is not None else ""
            raise TimeoutError(message + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def tail(log: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until_ready(
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[], bool],
    timeout: float,
) -> None:
    """Wait for a started ``process`` to be ``ready``; RuntimeError with its log if it exits."""

    def check() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{tail(log)}")
        return ready()

    wait_for(check, timeout, f"{what} to be ready", detail=lambda: tail(log))


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout``; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)

"""The log of a box build: every command's output in a file, progress as events.

A build is a sequence of named steps. Each step reports a ``running`` and an
``ok`` :class:`~provisioner.progress.ProgressEvent` (the latter with its
duration); long steps report ``info`` events on the way (debootstrap's
``I: ...`` lines, for example) and ``warning`` ones when something is off. The
CLI renders the events with rich (:mod:`provisioner.box.cli`);
:func:`logging_reporter` turns them into plain log lines. Every command's
output goes to the build log, never to the terminal, and a failing command
raises :class:`BoxError` naming that log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from provisioner.errors import BoxError
from provisioner.progress import Consumer, ProgressEvent, Status

Reporter = Consumer


def logging_reporter(logger: logging.Logger | None = None) -> Reporter:
    """A reporter that writes plain log lines (for scripts and tests)."""
    log = logger or logging.getLogger("provisioner.box")

    def report(event: ProgressEvent) -> None:
        if event.status == "ok":
            log.info("%s: %s (%.1fs)", event.phase, event.detail, event.elapsed or 0.0)
        elif event.status == "warning":
            log.warning("%s: %s", event.phase, event.detail)
        else:
            log.info("%s: %s", event.phase, event.detail)

    return report


def null_reporter(event: ProgressEvent) -> None:
    """Ignore progress."""
    del event


CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "HOME": "/root",
}


class BuildLog:
    """The log file of one build plus the reporter; runs commands with their output logged."""

    def __init__(self, path: Path, reporter: Reporter, subject: str = "box") -> None:
        self.path = path
        self.reporter = reporter
        self.subject = subject  # the events' subject: the box being built
        self.step_name = "build"
        self.step_started = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = path.open("a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._handle.close()

    def write(self, line: str) -> None:
        with self._lock:
            self._handle.write(line.rstrip("\n") + "\n")
            self._handle.flush()

    def report(self, status: Status, message: str) -> None:
        """Hand the current step's progress to the reporter."""
        elapsed = time.monotonic() - self.step_started
        self.reporter(ProgressEvent(self.subject, self.step_name, status, message, elapsed))

    def info(self, message: str) -> None:
        self.write(f"[{self.step_name}] {message}")
        self.report("info", message)

    def progress(self, message: str) -> None:
        """Report a line that is in the log already (a command's own output)."""
        self.report("info", message)

    def warning(self, message: str) -> None:
        self.write(f"[{self.step_name}] WARNING {message}")
        self.report("warning", message)

    @contextlib.contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        outer = self.step_name, self.step_started
        self.step_name, self.step_started = name, time.monotonic()
        self.write(f"==> {name}: {message}")
        self.report("running", message)
        try:
            yield
        except BaseException as exc:
            took = time.monotonic() - self.step_started
            self.step_name, self.step_started = outer
            self.write(f"<== {name} FAILED after {took:.1f}s: {exc!r}")
            raise
        elapsed = time.monotonic() - self.step_started
        self.write(f"<== {name}: done in {elapsed:.1f}s")
        self.report("ok", message)
        self.step_name, self.step_started = outer

    def run(
        self,
        command: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        what: str | None = None,
    ) -> str:
        """Run ``command`` with output to the log; return the output; raise BoxError on failure."""
        label = what or Path(command[0]).name
        self.write(f"$ {' '.join(command)}")
        merged_env = dict(os.environ) if env is None else dict(env)
        try:
            process = subprocess.Popen(
                list(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=merged_env,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise BoxError(
                f"cannot run {command[0]}: {exc.strerror}", hint=f"log: {self.path}"
            ) from exc
        tail: deque[str] = deque(maxlen=15)
        output: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.write(line)
                tail.append(line.rstrip())
                output.append(line)
                if on_line is not None:
                    on_line(line.rstrip())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise BoxError(
                f"{label} did not finish within {timeout:.0f}s",
                hint=f"see the build log: {self.path}",
            ) from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            reader.join(timeout=5)
        if code != 0:
            last = "\n  ".join(tail)
            raise BoxError(
                f"{label} failed (exit status {code}); last output:\n  {last}",
                hint=f"full output in the build log: {self.path}",
            )
        return "".join(output)

    def chroot(
        self, root: Path, *command: str, timeout: float = 600, what: str | None = None
    ) -> str:
        """Run a command inside the image tree with a clean, non-interactive environment."""
        return self.run(
            ["chroot", str(root), *command],
            timeout=timeout,
            env=CHROOT_ENV,
            what=what or f"{command[0]} (in the image)",
        )

"""The `lab` commands the benchmark measures, and what `lab up` reported on the way.

Each command runs in a child process as a user would run it, with
``LAB_PROGRESS_JSONL`` set so that `lab up` also writes its progress events as
JSON lines beside the command's log; the milestones and phase times come from
those events. Ctrl-C and the deadline reach the child, which gets time to
clean up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from benchmarks.report import Results, say, seconds
from provisioner.config import LabConfig
from provisioner.errors import LabError, WaitTimeout
from provisioner.hypervisor.libvirt import LibvirtHost
from provisioner.progress import JSONL_ENV, LAB, ProgressEvent, read_events

UP_TIMEOUT = 2400.0
VERIFY_TIMEOUT = 1200.0
DESTROY_TIMEOUT = 600.0
CHILD_GRACE = 180.0  # for a `lab` command to clean up after SIGINT

# The `lab` command being measured, in a child process as a user would run it.
LAB_COMMAND = (sys.executable, "-m", "provisioner.cli")
_children: list[subprocess.Popen[str]] = []


@dataclasses.dataclass(frozen=True)
class LabRun:
    returncode: int
    seconds: float
    cpu_seconds: float  # of the command's whole process tree (lab, vagrant, ruby, ssh; not QEMU)
    stdout: str
    events: tuple[ProgressEvent, ...]  # what the command reported, in order
    started_at: float  # when it started (seconds since the epoch, as the events' ``at``)


def children_cpu_seconds() -> float:
    """User + system time of every waited-for descendant (they add up through each wait)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_lab(
    lab_dir: Path, argv: Sequence[str], log: Path, timeout: float, *, echo: bool = True
) -> LabRun:
    """Run ``lab -C lab_dir ARGV``, its progress events as JSON lines; stop at the deadline.

    The events go to ``LOG.events.jsonl``; what the command prints on stderr (its
    progress lines among it) is echoed when ``echo`` and logged with the seconds
    since the start.
    """
    events_path = log.with_suffix(".events.jsonl")
    events_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "COLUMNS": "200",  # the final timing line must not wrap
        JSONL_ENV: str(events_path),
    }
    command = [*LAB_COMMAND, "-C", str(lab_dir), *argv]
    stdout_path = log.with_suffix(".stdout")
    with log.open("w") as err_log, stdout_path.open("w") as out:
        cpu_before = children_cpu_seconds()
        started_at = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        _children.append(proc)

        def read(stream: TextIO) -> None:
            for line in stream:
                at = time.monotonic() - started
                err_log.write(f"{at:8.2f} {line}")
                if echo:
                    print(f"    | {line.rstrip()}", flush=True)

        assert proc.stderr is not None
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_child(proc, interrupt=True)
            raise WaitTimeout(
                "lab", f"`lab {' '.join(argv)}` did not finish within {timeout:g}s", hint=str(log)
            ) from None
        except KeyboardInterrupt:
            # Ctrl-C reached the child too (same process group); SIGTERM was forwarded.
            stop_child(proc, interrupt=False)
            raise
        except BaseException:
            stop_child(proc, interrupt=True)
            raise
        finally:
            reader.join(timeout=10)
            _children.remove(proc)
        took = time.monotonic() - started
    cpu = children_cpu_seconds() - cpu_before
    events = tuple(read_events(events_path))
    return LabRun(proc.returncode, took, cpu, stdout_path.read_text(), events, started_at)


def stop_child(proc: subprocess.Popen[str], *, interrupt: bool) -> None:
    """Let a `lab` command clean up after SIGINT (sent here when ``interrupt``), then kill it."""
    if proc.poll() is not None:
        return
    if interrupt:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=CHILD_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def interrupt_children(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM: forward SIGINT to a running `lab` command, then unwind like Ctrl-C."""
    for child in list(_children):
        with contextlib.suppress(OSError):
            child.send_signal(signal.SIGINT)
    raise KeyboardInterrupt(f"signal {signum}")


def require_ok(run: LabRun, what: str, log: Path) -> None:
    if run.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise LabError(
            f"{what} exited with status {run.returncode}: " + " / ".join(tail),
            hint=f"full output in {log} and {log.with_suffix('.stdout')}",
        )


def make_lab_dir(path: Path, name: str, subnet: ipaddress.IPv4Network) -> Path:
    """A lab directory with its lab.yaml (QEMU never reads inside it)."""
    path.mkdir(mode=0o700)
    (path / "lab.yaml").write_text(f"name: {name}\nsubnet: {subnet}\n")
    return path


def lab_cleanup(
    lab_dir: Path, lab_name: str, logs: Path, keep_logs: Callable[[], bool]
) -> Callable[[], object]:
    """`lab destroy` unless it already ran, then remove anything still carrying the lab's name.

    The lab's own logs (consoles, vagrant.log) are copied into ``logs`` first
    when ``keep_logs()`` says so (after a failure).
    """

    def step() -> object:
        done = []
        if (lab_dir / ".lab" / "state.json").exists():
            run = run_lab(
                lab_dir, ["destroy"], logs / f"{lab_name}-cleanup-destroy.log", DESTROY_TIMEOUT,
                echo=False,
            )  # fmt: skip
            done.append(f"lab destroy exited {run.returncode}")
        with LibvirtHost.open() as host:
            if not host.lab_objects(lab_name).empty:
                done.append(f"removed {host.remove_lab(lab_name)}")
        if keep_logs() and (lab_dir / ".lab" / "logs").is_dir():
            shutil.copytree(lab_dir / ".lab" / "logs", logs / f"{lab_name}-logs")
        shutil.rmtree(lab_dir, ignore_errors=True)
        return "; ".join(done)

    return step


def lab_phase_seconds(events: Iterable[ProgressEvent]) -> dict[str, float]:
    """How long each of the lab's own phases took, from its ``ok``/``failed`` events."""
    return {
        e.phase: e.elapsed
        for e in events
        if e.subject == LAB and e.status in ("ok", "failed") and e.elapsed is not None
    }


@dataclass(frozen=True)
class Milestones:
    """When ``lab up`` reported reaching a point, in seconds since it started."""

    first_banner: float | None
    all_banners: float | None
    etcd_healthy: float | None


def lab_milestones(events: Sequence[ProgressEvent], nodes: int, since: float) -> Milestones:
    """First and last node's SSH banner, and when the lab saw every etcd member healthy.

    In seconds from ``since`` (when ``lab up`` started, as the events' ``at``).
    These are when ``lab up`` *noticed* (its checks poll while ``vagrant up``
    runs), so they are upper bounds for when the guests got there.
    """
    banners = sorted(e.at - since for e in events if e.phase == "ssh banner" and e.status == "ok")
    healthy = None
    for event in events:
        match = _MEMBERS_HEALTHY.match(event.detail)
        if event.phase == "cluster" and match and match["healthy"] == match["wanted"]:
            healthy = event.at - since
            break
    return Milestones(
        first_banner=banners[0] if banners else None,
        all_banners=banners[nodes - 1] if len(banners) >= nodes else None,
        etcd_healthy=healthy,
    )


# the cluster check's detail once etcd is healthy: "3/3 members healthy"
_MEMBERS_HEALTHY = re.compile(r"^(?P<healthy>\d+)/(?P<wanted>\d+) members healthy")
# The CLI's last line after a fresh `up`: "accel tcg; render 0.0s, host 0.0s, ..."
_SUMMARY_LINE = re.compile(r"^accel (?P<accel>\w+); (?P<phases>.+)$")
_SUMMARY_PHASE = re.compile(r"^(?P<phase>\w[\w ]*?) (?P<seconds>\d+(?:\.\d+)?)s$")


def parse_phase_summary(stdout: str) -> tuple[str, dict[str, float]] | None:
    """The accelerator and per-phase seconds from ``lab up``'s final line, if it printed one.

    The line may have been wrapped by the terminal width, so everything from the
    line starting ``accel`` onwards is joined before it is read.
    """
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if line.split(" ", 1)[0] == "accel":
            joined = " ".join(part.strip() for part in lines[index:])
            match = _SUMMARY_LINE.match(joined)
            if match is None:
                return None
            phases: dict[str, float] = {}
            for item in match.group("phases").split(","):
                entry = _SUMMARY_PHASE.match(item.strip())
                if entry is None:
                    return None
                phases[entry.group("phase")] = float(entry.group("seconds"))
            return match.group("accel"), phases
    return None


def record_lab_up(up: LabRun, lab: LabConfig, results: Results) -> None:
    """Phase times (the CLI's final line, else the progress events) and milestones."""
    phases = lab_phase_seconds(up.events)
    summary = parse_phase_summary(up.stdout)
    box_detail = next(
        (e.detail for e in up.events if (e.subject, e.phase, e.status) == (LAB, "box", "ok")),
        "",
    )
    marks = lab_milestones(up.events, len(lab.nodes), up.started_at)
    results.lab_phases = summary[1] if summary else phases
    results.tool_cpu["lab up"] = up.cpu_seconds
    results.lab_up = {
        "returncode": up.returncode,
        "seconds": up.seconds,
        "accel": summary[0] if summary else None,
        "phases_from_progress_lines": phases,
        "box_phase": box_detail,
        "seen_by_lab": dataclasses.asdict(marks),
        "discovery": lab.discovery,
    }
    if up.returncode != 0:
        return
    results.lab_total = up.seconds
    if "(cached;" not in box_detail or "uploaded" in box_detail:
        results.errors.append(
            f"lab up's box phase did not use the cached, uploaded box: {box_detail!r}"
        )
    say(
        f"lab up: {up.seconds:.1f}s; it noticed the first SSH banner at "
        f"{seconds(marks.first_banner)}s, all at {seconds(marks.all_banners)}s, "
        f"etcd healthy at {seconds(marks.etcd_healthy)}s"
    )

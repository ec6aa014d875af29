"""Sampling the host while the benchmark runs: memory, CPU and other people's guests.

:class:`HostSampler` reads ``/proc`` (and libvirt's pid files) every 0.5 s in
a thread; :func:`measured` turns the samples taken during one part of the run
into its :class:`PartStats`. The ``parse_*`` readers and the window arithmetic
are pure.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_mem_available_kib(meminfo: str) -> int:
    """``MemAvailable`` from ``/proc/meminfo``, in KiB."""
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        if name == "MemAvailable":
            return int(rest.split()[0])
    raise ValueError("no MemAvailable line in /proc/meminfo")


def parse_vm_rss_kib(status: str) -> int:
    """``VmRSS`` from ``/proc/PID/status``, in KiB (0 for a process without memory)."""
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        if name == "VmRSS":
            return int(rest.split()[0])
    return 0


def parse_cpu_busy_ticks(stat: str) -> int:
    """Clock ticks the host's CPUs spent busy (not idle, not waiting for I/O), from /proc/stat."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
            values = [int(v) for v in fields[1:9]]
            return sum(values) - values[3] - values[4]
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_process_cpu_ticks(stat: str) -> int:
    """utime + stime of a process in clock ticks, from ``/proc/PID/stat``.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ``)``.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) + int(rest[12])


def average_rate(samples: Sequence[tuple[float, int]], start: float, end: float) -> float | None:
    """How fast a counter grew between ``start`` and ``end`` (per second); None if unknown."""
    during = [(at, value) for at, value in samples if start <= at <= end]
    if len(during) < 2 or during[-1][0] <= during[0][0]:
        return None
    (t0, v0), (t1, v1) = during[0], during[-1]
    return (v1 - v0) / (t1 - t0)


def window_max(samples: Sequence[tuple[float, int]], start: float, end: float) -> int | None:
    """The largest sampled value between ``start`` and ``end``; None if none was sampled."""
    during = [value for at, value in samples if start <= at <= end]
    return max(during) if during else None


def peak_used_mib(samples: Sequence[tuple[float, int]], start: float, end: float) -> float | None:
    """Peak memory taken above the level at ``start``, in MiB, from (time, MemAvailable KiB).

    The baseline is the last sample at or before ``start`` (else the first one
    after it); None when no sample falls in the window.
    """
    before = [kib for at, kib in samples if at <= start]
    during = [kib for at, kib in samples if start <= at <= end]
    if not during:
        return None
    baseline = before[-1] if before else during[0]
    return max(0, baseline - min(during)) / 1024


@dataclass(frozen=True)
class PartStats:
    """One measured part of the run, with what else the host was doing meanwhile."""

    seconds: float | None  # None when the part failed or was interrupted
    peak_mib: float | None  # host memory taken above the level at the part's start
    guests_peak_mib: float | None  # resident memory of the benchmark's own QEMU processes
    host_cpu: float | None  # CPUs busy on average, whoever used them
    guests_cpu: float | None  # CPUs the benchmark's own QEMU processes used on average
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    other_domains: int  # most running libvirt domains that were not the benchmark's


def load() -> tuple[float, float, float]:
    return os.getloadavg()


class HostSampler:
    """Every 0.5 s in a thread, each as (monotonic time, value): the host's MemAvailable
    (KiB) and busy CPU (clock ticks), this run's QEMU processes' resident memory (KiB)
    and CPU (ticks, including processes that have exited), and how many other libvirt
    domains run (from libvirt's pid files, so no libvirt call per sample).
    """

    def __init__(self, run_id: str, pid_dir: Path = Path("/run/libvirt/qemu")) -> None:
        self.run_id = run_id
        self.pid_dir = pid_dir
        self.available: list[tuple[float, int]] = []
        self.guests: list[tuple[float, int]] = []
        self.others: list[tuple[float, int]] = []
        self.host_cpu: list[tuple[float, int]] = []
        self.guests_cpu: list[tuple[float, int]] = []
        self._ticks: dict[int, int] = {}  # pid -> last CPU ticks seen
        # this run's QEMU processes, (domain, pid) -> when first seen: a domain booted
        # again in a later round has a new pid
        self.started: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meminfo", daemon=True)

    def _sample(self) -> None:
        now = time.monotonic()
        self.available.append((now, parse_mem_available_kib(Path("/proc/meminfo").read_text())))
        ours = others = 0
        for pid_file in self.pid_dir.glob("*.pid"):
            if pid_file.name == "driver.pid":
                continue
            if self.run_id not in pid_file.stem:
                others += 1
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                self.started.setdefault((pid_file.stem, str(pid)), now)
                ours += parse_vm_rss_kib(Path(f"/proc/{pid}/status").read_text())
                self._ticks[pid] = parse_process_cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
        self.guests.append((now, ours))
        self.others.append((now, others))
        self.guests_cpu.append((now, sum(self._ticks.values())))
        self.host_cpu.append((now, parse_cpu_busy_ticks(Path("/proc/stat").read_text())))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_SECONDS)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def first_start(self, prefix: str, after: float = 0.0) -> float | None:
        """When the first QEMU process of a domain named ``prefix...`` was seen (of those
        seen at ``after`` or later)."""
        starts = [
            at
            for (name, _pid), at in self.started.items()
            if name.startswith(prefix) and at >= after
        ]
        return min(starts) if starts else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def measured(
    name: str, parts: MutableMapping[str, PartStats], sampler: HostSampler, others: int
) -> Iterator[None]:
    """Time a part and record its peak memory and the load around it (also on failure).

    ``others``: how many other libvirt domains ran as it started.
    """
    before = load()
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        ended = time.monotonic()
        guests_kib = window_max(sampler.guests, started, ended)
        host_ticks = average_rate(sampler.host_cpu, started, ended)
        guest_ticks = average_rate(sampler.guests_cpu, started, ended)
        parts[name] = PartStats(
            seconds=ended - started if ok else None,
            peak_mib=peak_used_mib(sampler.available, started, ended),
            guests_peak_mib=guests_kib / 1024 if guests_kib is not None else None,
            host_cpu=host_ticks / CLOCK_TICKS if host_ticks is not None else None,
            guests_cpu=guest_ticks / CLOCK_TICKS if guest_ticks is not None else None,
            load_before=before,
            load_after=load(),
            other_domains=max(others, window_max(sampler.others, started, ended) or 0),
        )

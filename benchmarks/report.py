"""What the benchmark found: the results, the summary table, their JSON.

Everything here is data in, text out, except :func:`say` and
:func:`print_summary`, which print.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.floor import BootTimes
from benchmarks.sampler import PartStats

TARGET_RATIO = 1.5
GOAL_RATIO = 1.2


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def verdict(ratio: float, target: float = TARGET_RATIO, goal: float = GOAL_RATIO) -> str:
    if ratio <= goal:
        return f"meets the goal (<= {goal:g}) and the target (<= {target:g})"
    if ratio <= target:
        return f"meets the target (<= {target:g}), not the goal (<= {goal:g})"
    return f"misses the target (<= {target:g}) and the goal (<= {goal:g})"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def cpus(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned but the last."""
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == 0 or i == len(cells) - 1:
                out.append(cell.ljust(widths[i]))
            else:
                out.append(cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def boot_rows(label: str, boot: BootTimes, prep_note: str) -> list[list[str]]:
    since = "since the first guest started"
    blank = [""] * 6
    return [
        [f"{label}: first guest started", seconds(boot.prep), *blank, prep_note],
        [f"{label}: first SSH banner", seconds(boot.first_banner), *blank, since],
        [f"{label}: all SSH banners", seconds(boot.all_banners), *blank, since],
        [f"{label}: etcd 3/3 healthy", seconds(boot.healthy), *blank, since],
    ]


def summary_rows(
    floor: BootTimes | None,
    lab_boot: BootTimes | None,
    lab_total: float | None,
    lab_phases: Mapping[str, float],
    parts: Mapping[str, PartStats],
) -> list[list[str]]:
    """The summary table, one row per line of :data:`SUMMARY_HEADERS`.

    ``lab_boot`` is ``lab up``'s guests as the benchmark saw them from outside;
    ``parts`` holds "floor", "lab up", "lab verify" and "lab destroy" when they ran.
    """

    def stats(name: str) -> list[str]:
        part = parts.get(name)
        if part is None:
            return ["-"] * 6
        return [
            mib(part.peak_mib),
            mib(part.guests_peak_mib),
            cpus(part.host_cpu),
            cpus(part.guests_cpu),
            f"{part.load_before[0]:.1f}/{part.load_after[0]:.1f}",
            str(part.other_domains),
        ]

    blank = [""] * 6
    rows: list[list[str]] = []
    if floor is not None:
        rows += boot_rows("floor", floor, "network, overlays, config drives, define")
    total = seconds(floor.total if floor else None)
    rows.append(["floor: total", total, *stats("floor"), "until etcd 3/3 healthy"])
    rows += [[f"lab up: {phase}", seconds(s), *blank, "phase"] for phase, s in lab_phases.items()]
    if lab_boot is not None:
        rows += boot_rows("lab up", lab_boot, "render .. drives, then vagrant until QEMU runs")
        if lab_total is not None:
            after = lab_total - lab_boot.total
            rows.append(["lab up: after etcd healthy", seconds(after), *blank, "until it returned"])
    rows.append(["lab up: total", seconds(lab_total), *stats("lab up"), "wall clock"])
    for name in ("lab verify", "lab destroy"):
        part = parts.get(name)
        rows.append([name, seconds(part.seconds if part else None), *stats(name), ""])
    if floor is not None and lab_total is not None:
        ratio = lab_total / floor.total
        rows.append(["ratio lab up / floor", f"{ratio:.2f}", *blank, verdict(ratio)])
    return rows


SUMMARY_HEADERS = (
    "", "seconds", "host MiB", "guests MiB", "host CPU", "guests CPU", "load 1m", "others", "note",
)  # fmt: skip


@dataclasses.dataclass
class Results:
    """What the run found out; printed as a table and written as JSON."""

    started: str
    run_id: str
    host: dict[str, Any] = dataclasses.field(default_factory=dict)
    box: dict[str, Any] = dataclasses.field(default_factory=dict)
    warmup: dict[str, Any] = dataclasses.field(default_factory=dict)
    parts: dict[str, PartStats] = dataclasses.field(default_factory=dict)
    floor: BootTimes | None = None
    lab_boot: BootTimes | None = None
    lab_up: dict[str, Any] = dataclasses.field(default_factory=dict)
    lab_phases: dict[str, float] = dataclasses.field(default_factory=dict)
    lab_total: float | None = None
    tool_cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # command -> CPU s
    verify_ok: bool | None = None
    rounds: list[dict[str, float]] = dataclasses.field(default_factory=list)  # floor, lab up
    leftovers: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def median_ratio(self) -> float | None:
        """The median of the rounds' ratios (each lab up over the floor run just before it)."""
        ratios = [r["lab_up"] / r["floor"] for r in self.rounds]
        return statistics.median(ratios) if ratios else None

    def to_json(self) -> dict[str, Any]:
        ratio = (
            self.lab_total / self.floor.total if self.floor and self.lab_total is not None else None
        )
        floor = None
        if self.floor is not None:
            floor = {**dataclasses.asdict(self.floor), "total": self.floor.total}
        return {
            "started": self.started,
            "run_id": self.run_id,
            "host": self.host,
            "box": self.box,
            "warmup": self.warmup,
            "floor": floor,
            "lab_up_guests": (
                {**dataclasses.asdict(self.lab_boot), "total": self.lab_boot.total}
                if self.lab_boot
                else None
            ),
            "lab_up": {**self.lab_up, "total": self.lab_total, "phases": self.lab_phases},
            "verify_ok": self.verify_ok,
            "lab_commands_cpu_seconds": self.tool_cpu,
            "parts": {name: dataclasses.asdict(part) for name, part in self.parts.items()},
            "ratio": ratio,
            "rounds": self.rounds,
            "ratio_median": self.median_ratio(),
            "target": TARGET_RATIO,
            "goal": GOAL_RATIO,
            "verdict": verdict(self.median_ratio() or ratio) if ratio is not None else None,
            "leftovers": self.leftovers,
            "errors": self.errors,
        }


def describe(times: BootTimes) -> str:
    return (
        f"first guest started after {times.prep:.1f}s; since then: first SSH banner "
        f"{times.first_banner:.1f}s, all {times.all_banners:.1f}s, "
        f"etcd healthy {times.healthy:.1f}s"
    )


def print_summary(results: Results) -> None:
    print()
    print(
        f"lab up --nodes 3 vs. the floor ({results.host.get('accel', '?')}, "
        f"{results.host.get('cpus', '?')} CPUs, box {results.box.get('name', '?')})"
    )
    rows = summary_rows(
        results.floor, results.lab_boot, results.lab_total, results.lab_phases, results.parts
    )
    print(format_table(SUMMARY_HEADERS, rows))
    warm = results.warmup
    if warm.get("needed"):
        print(f"box upload warm-up (not counted): {warm['seconds']:.1f}s")
    seen = results.lab_up.get("seen_by_lab")
    if seen:
        print(
            f"lab up noticed (since it started): first SSH banner {seconds(seen['first_banner'])}s,"
            f" all {seconds(seen['all_banners'])}s, etcd healthy {seconds(seen['etcd_healthy'])}s;"
            " its node checks run while vagrant up boots the guests"
        )
    print(
        "host MiB: peak host memory taken above the level at the part's start (MemAvailable),"
        " other people's work included; guests MiB: peak resident memory of this run's QEMU"
        " processes; host CPU / guests CPU: CPUs busy on average, on the whole host / in this"
        " run's QEMU processes; load 1m: before/after; others: most other running domains"
        " meanwhile."
    )
    if results.tool_cpu:
        print(
            "CPU time of the lab commands' own process trees (lab, vagrant, ruby, ssh; not QEMU): "
            + ", ".join(f"{name} {cpu:.1f}s" for name, cpu in results.tool_cpu.items())
        )
    if len(results.rounds) > 1:
        listed = "; ".join(
            f"{r['lab_up'] / r['floor']:.2f} ({r['lab_up']:.1f}s / {r['floor']:.1f}s)"
            for r in results.rounds
        )
        median = results.median_ratio()
        assert median is not None
        print(f"rounds, lab up / the floor just before it: {listed}")
        print(f"median ratio {median:.2f}: {verdict(median)}")
    print(f"left in libvirt: {', '.join(results.leftovers) or 'nothing'}")
    for error in results.errors:
        print(f"error: {error}")

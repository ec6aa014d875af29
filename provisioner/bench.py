"""Pure helpers for ``scripts/bench_up.py``: `lab up` against a floor of bare libvirt guests.

The benchmark boots the same box twice: once directly with libvirt (the floor:
overlays, config drives, one isolated network, nothing else) and once with
``lab up``. Everything here is data in, data out: reading ``lab up``'s progress
lines, etcd's HTTP answers and ``/proc/meminfo``, the floor's domain XML,
picking free subnets and laying out the summary. The side effects live in the
script.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.accel import AccelChoice
from provisioner.hypervisor.boxvolume import volume_prefix

TARGET_RATIO = 1.5
GOAL_RATIO = 1.2
BENCH_PREFIX = "bench-"

# --- `lab up` progress -------------------------------------------------------

# provisioner.progress.PlainProgress: "HH:MM:SS subject phase status[ after N.Ns][: detail]"
# (subject padded to 10, phase to 12; phases may hold spaces, e.g. "ssh banner").
_PROGRESS_LINE = re.compile(
    r"^(?P<clock>\d\d:\d\d:\d\d) (?P<subject>\S+)\s+(?P<phase>\S.*?)\s+"
    r"(?P<status>running|ok|failed|skipped)"
    r"(?: after (?P<elapsed>\d+(?:\.\d+)?)s)?(?:: (?P<detail>.*))?$"
)
# The CLI's last line after a fresh `up`: "accel tcg; render 0.0s, host 0.0s, ..."
_SUMMARY_LINE = re.compile(r"^accel (?P<accel>\w+); (?P<phases>.+)$")
_SUMMARY_PHASE = re.compile(r"^(?P<phase>\w[\w ]*?) (?P<seconds>\d+(?:\.\d+)?)s$")
_MEMBERS_HEALTHY = re.compile(r"^(?P<healthy>\d+)/(?P<wanted>\d+) members healthy")
LAB_SUBJECT = "lab"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress line of ``lab up``, stamped with when the benchmark read it."""

    at: float  # seconds since `lab up` started, as seen by the reader
    subject: str  # "lab" or a node name
    phase: str
    status: str  # running | ok | failed | skipped
    elapsed: float | None  # "after N.Ns": how long the phase took, when it ended
    detail: str


def parse_progress_line(line: str, at: float) -> ProgressEvent | None:
    """A progress line as an event, or None for any other output."""
    match = _PROGRESS_LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    elapsed = match.group("elapsed")
    return ProgressEvent(
        at=at,
        subject=match.group("subject"),
        phase=match.group("phase"),
        status=match.group("status"),
        elapsed=float(elapsed) if elapsed is not None else None,
        detail=match.group("detail") or "",
    )


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


def lab_phase_seconds(events: Iterable[ProgressEvent]) -> dict[str, float]:
    """How long each of the lab's own phases took, from its ``ok``/``failed`` lines."""
    return {
        e.phase: e.elapsed
        for e in events
        if e.subject == LAB_SUBJECT and e.status in ("ok", "failed") and e.elapsed is not None
    }


@dataclass(frozen=True)
class Milestones:
    """When ``lab up`` reported reaching a point, in seconds since it started."""

    first_banner: float | None
    all_banners: float | None
    etcd_healthy: float | None


def lab_milestones(events: Sequence[ProgressEvent], nodes: int) -> Milestones:
    """First and last node's SSH banner, and when the lab saw every etcd member healthy.

    These are when ``lab up`` *noticed* (its checks poll while ``vagrant up``
    runs), so they are upper bounds for when the guests got there.
    """
    banners = sorted(e.at for e in events if e.phase == "ssh banner" and e.status == "ok")
    healthy = None
    for event in events:
        match = _MEMBERS_HEALTHY.match(event.detail)
        if event.phase == "cluster" and match and match["healthy"] == match["wanted"]:
            healthy = event.at
            break
    return Milestones(
        first_banner=banners[0] if banners else None,
        all_banners=banners[nodes - 1] if len(banners) >= nodes else None,
        etcd_healthy=healthy,
    )


# --- host memory -----------------------------------------------------------------


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


# --- networks ------------------------------------------------------------------------

_INET = re.compile(r"\binet (?P<cidr>\d+\.\d+\.\d+\.\d+/\d+)")


def parse_ip_addr_networks(text: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's interfaces, from ``ip -o -4 addr show``."""
    return [ipaddress.IPv4Interface(m.group("cidr")).network for m in _INET.finditer(text)]


def pick_subnets(
    used: Iterable[ipaddress.IPv4Network],
    count: int,
    candidates: Iterable[ipaddress.IPv4Network] | None = None,
) -> list[ipaddress.IPv4Network]:
    """``count`` /24s that overlap nothing in ``used`` (nor each other).

    By default from 192.168.200.0/24 upwards: labs pick their default subnet in
    192.168.100-199, so the benchmark stays out of their way.
    """
    taken = list(used)
    pool = candidates or (ipaddress.IPv4Network(f"192.168.{n}.0/24") for n in range(200, 255))
    chosen: list[ipaddress.IPv4Network] = []
    for net in pool:
        if len(chosen) == count:
            break
        if not any(net.overlaps(other) for other in (*taken, *chosen)):
            chosen.append(net)
    if len(chosen) < count:
        raise ValueError(f"no {count} free /24 subnets among the candidates")
    return chosen


# --- vagrant-libvirt's copy of the box ------------------------------------------------


def box_uploaded(volumes: Iterable[str], vagrant_name: str) -> bool:
    """Whether vagrant-libvirt's copy of the box (any version) is among ``volumes``."""
    prefix = volume_prefix(vagrant_name)
    return any(name.startswith(prefix) for name in volumes)


# --- the floor's guests --------------------------------------------------------------


@dataclass(frozen=True)
class FloorGuest:
    """One guest of the floor: a libvirt domain defined straight from XML."""

    domain: str
    hostname: str
    ip: str
    mac: str
    memory_mib: int
    cpus: int
    disk: Path  # qcow2 overlay on the box image
    config_drive: Path  # config-2 ISO
    console_log: Path
    network: str


def render_domain_xml(guest: FloorGuest, accel: AccelChoice) -> str:
    """Domain XML for ``guest``: what vagrant-libvirt defines for a lab node, minus Vagrant.

    ``<domain type='qemu'>`` with CPU model qemu64 under TCG, ``type='kvm'`` with
    host-passthrough on hardware virtualisation; virtio disk and NIC, the config
    drive as a read-only IDE cdrom, the serial console into a file, virtio RNG.
    """
    root = ET.Element("domain", type=accel.driver)
    ET.SubElement(root, "name").text = guest.domain
    ET.SubElement(root, "description").text = "bench_up.py floor guest"
    ET.SubElement(root, "memory", unit="MiB").text = str(guest.memory_mib)
    ET.SubElement(root, "vcpu").text = str(guest.cpus)
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(root, "features")
    for feature in ("acpi", "apic", "pae"):
        ET.SubElement(features, feature)
    if accel.accel == "kvm":
        ET.SubElement(root, "cpu", mode="host-passthrough")
    else:
        cpu = ET.SubElement(root, "cpu", mode="custom", match="exact")
        ET.SubElement(cpu, "model", fallback="allow").text = accel.cpu_model
    ET.SubElement(root, "clock", offset="utc")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=str(guest.disk))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "source", file=str(guest.config_drive))
    ET.SubElement(cdrom, "target", dev="hda", bus="ide")
    ET.SubElement(cdrom, "readonly")
    nic = ET.SubElement(devices, "interface", type="network")
    ET.SubElement(nic, "mac", address=guest.mac)
    ET.SubElement(nic, "source", network=guest.network)
    ET.SubElement(nic, "model", type="virtio")
    for tag, target in (("serial", {"port": "0"}), ("console", {"type": "serial", "port": "0"})):
        element = ET.SubElement(devices, tag, type="file")
        ET.SubElement(element, "source", path=str(guest.console_log))
        ET.SubElement(element, "target", target)
    rng = ET.SubElement(devices, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class BootTimes:
    """Guests booting, in seconds, seen from the host with the same probes for both runs.

    ``prep`` runs from the start until the first guest's QEMU starts; the other
    three count from that start: the first and the last SSH banner, and every
    member answering ``/health`` true with every member started.
    """

    prep: float
    first_banner: float
    all_banners: float
    healthy: float

    @property
    def total(self) -> float:
        """From the start until etcd is healthy."""
        return self.prep + self.healthy


def verdict(ratio: float, target: float = TARGET_RATIO, goal: float = GOAL_RATIO) -> str:
    if ratio <= goal:
        return f"meets the goal (<= {goal:g}) and the target (<= {target:g})"
    if ratio <= target:
        return f"meets the target (<= {target:g}), not the goal (<= {goal:g})"
    return f"misses the target (<= {target:g}) and the goal (<= {goal:g})"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


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


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


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


def cpus(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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

#!/usr/bin/env python3
"""Benchmark `lab up` against a floor of bare libvirt guests: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_up.py [--json FILE] [--nodes 3] [--discovery MODE] [--rounds N]

In one run, on this host:

1. the floor: the same box booted three times straight from libvirt-python
   (domain XML written here, qcow2 overlays, a config-2 ISO per guest with a
   static-etcd cloud-config rendered by provisioner.render, one isolated network
   with DHCP reservations), timed until etcd answers 3/3 healthy over HTTP from
   the host, with the first and last SSH banner on the way;
2. `lab up --nodes N` in a fresh lab directory under /var/tmp, phase by phase
   from its progress lines, while the floor's probes watch its guests from
   outside (so boot, and what comes before and after it, compare directly),
   then `lab verify`;
3. the ratio lab up / floor, against the target 1.5 and the goal 1.2; with
   ``--rounds N``, steps 1 and 2 (without verify) again N-1 times, each lab up
   over the floor run just before it, and the median of those ratios, since the
   speed of a shared host drifts from one minute to the next;
4. `lab destroy`;
5. per part, sampled every 0.5 s: peak host memory above the level at the part's
   start (MemAvailable), peak resident memory of the run's own QEMU processes,
   average busy CPUs on the host and in those QEMU processes, the load average
   before and after; and the CPU time of each `lab` command's process tree.

The box is built (or found in the cache) first. Its one-time upload into the
libvirt pool is done by a 1-node warm-up lab when it is missing, so no timed
part pays for it. Everything is named `bench-...` and removed at the end, also
after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import ipaddress
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import libvirt

from provisioner.accel import AccelChoice, choose_accel
from provisioner.bench import (
    GOAL_RATIO,
    SUMMARY_HEADERS,
    TARGET_RATIO,
    BootTimes,
    FloorGuest,
    PartStats,
    ProgressEvent,
    average_rate,
    box_uploaded,
    format_table,
    lab_milestones,
    lab_phase_seconds,
    parse_cpu_busy_ticks,
    parse_ip_addr_networks,
    parse_mem_available_kib,
    parse_phase_summary,
    parse_process_cpu_ticks,
    parse_progress_line,
    parse_vm_rss_kib,
    peak_used_mib,
    pick_subnets,
    render_domain_xml,
    seconds,
    summary_rows,
    verdict,
    window_max,
)
from provisioner.box.build import BuiltBox, build_box
from provisioner.config import LabConfig, Overrides, build_config, load_config
from provisioner.configdrive import build_config_drive, meta_data
from provisioner.errors import HostError, LabError, WaitTimeout
from provisioner.etcdhttp import EtcdHttp, member_health
from provisioner.hypervisor.boxvolume import volume_prefix
from provisioner.hypervisor.libvirt import LibvirtHost, check_qemu_can_open
from provisioner.hypervisor.naming import object_prefix
from provisioner.hypervisor.network import DhcpHost, lab_network, parse_network_xml
from provisioner.render import RenderInputs, render_lab
from provisioner.state import ensure_ssh_key

FLOOR_TIMEOUT = 900.0  # three TCG guests on a shared 2-core host: boot to etcd healthy
UP_TIMEOUT = 2400.0
VERIFY_TIMEOUT = 1200.0
DESTROY_TIMEOUT = 600.0
CHILD_GRACE = 180.0  # for a `lab` command to clean up after SIGINT
SAMPLE_SECONDS = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.5

# The `lab` command being measured, in a child process as a user would run it.
LAB = (sys.executable, "-m", "provisioner.cli")


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def load() -> tuple[float, float, float]:
    return os.getloadavg()


# --- host memory ----------------------------------------------------------------


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


# --- results ------------------------------------------------------------------------


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


def other_domains(host: LibvirtHost, run_id: str) -> list[str]:
    active = host.connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return sorted(d.name() for d in active if run_id not in d.name())


@contextlib.contextmanager
def measured(
    name: str, results: Results, sampler: HostSampler, host: LibvirtHost
) -> Iterator[None]:
    """Time a part and record its peak memory and the load around it (also on failure)."""
    others = len(other_domains(host, results.run_id))
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
        results.parts[name] = PartStats(
            seconds=ended - started if ok else None,
            peak_mib=peak_used_mib(sampler.available, started, ended),
            guests_peak_mib=guests_kib / 1024 if guests_kib is not None else None,
            host_cpu=host_ticks / CLOCK_TICKS if host_ticks is not None else None,
            guests_cpu=guest_ticks / CLOCK_TICKS if guest_ticks is not None else None,
            load_before=before,
            load_after=load(),
            other_domains=max(others, window_max(sampler.others, started, ended) or 0),
        )


# --- `lab` commands -------------------------------------------------------------------

_children: list[subprocess.Popen[str]] = []


@dataclasses.dataclass(frozen=True)
class LabRun:
    returncode: int
    seconds: float
    cpu_seconds: float  # of the command's whole process tree (lab, vagrant, ruby, ssh; not QEMU)
    stdout: str
    events: tuple[ProgressEvent, ...]


def children_cpu_seconds() -> float:
    """User + system time of every waited-for descendant (they add up through each wait)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_lab(
    lab_dir: Path, argv: Sequence[str], log: Path, timeout: float, *, echo: bool = True
) -> LabRun:
    """Run ``lab -C lab_dir ARGV``; stamp each progress line on arrival; stop at the deadline."""
    env = {**os.environ, "COLUMNS": "200"}  # the final timing line must not wrap
    command = [*LAB, "-C", str(lab_dir), *argv]
    events: list[ProgressEvent] = []
    stdout_path = log.with_suffix(".stdout")
    with log.open("w") as err_log, stdout_path.open("w") as out:
        cpu_before = children_cpu_seconds()
        started = time.monotonic()
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        _children.append(proc)

        def read(stream: TextIO) -> None:
            for line in stream:
                at = time.monotonic() - started
                err_log.write(f"{at:8.2f} {line}")
                event = parse_progress_line(line, at)
                if event is not None:
                    events.append(event)
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
    return LabRun(proc.returncode, took, cpu, stdout_path.read_text(), tuple(events))


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


def require_ok(run: LabRun, what: str, log: Path) -> None:
    if run.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise LabError(
            f"{what} exited with status {run.returncode}: " + " / ".join(tail),
            hint=f"full output in {log} and {log.with_suffix('.stdout')}",
        )


def make_lab_dir(path: Path, name: str, subnet: ipaddress.IPv4Network) -> Path:
    """A lab directory QEMU can read config drives from (mode 755 on the way down)."""
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    (path / "lab.yaml").write_text(f"name: {name}\nsubnet: {subnet}\n")
    check_qemu_can_open(path / "lab.yaml")
    return path


# --- the floor ----------------------------------------------------------------------


class Floor:
    """Three guests from the box, straight from libvirt: no lab, no Vagrant."""

    def __init__(
        self,
        run_id: str,
        workdir: Path,
        lab: LabConfig,
        subnet: ipaddress.IPv4Network,
        accel: AccelChoice,
    ) -> None:
        self.name = f"bench-floor-{run_id}"
        self.dir = workdir / self.name
        self.accel = accel
        self.config = build_config(
            {
                "name": self.name,
                "subnet": str(subnet),
                "discovery": "static",
                "num_instances": lab.num_instances,
                "vm_memory": lab.vm_memory,
                "vm_cpus": lab.vm_cpus,
            },
            self.dir,
            Overrides(),
        )
        self.base = self.dir / "box.qcow2"
        self.guests: list[FloorGuest] = []
        self.defined: list[str] = []
        self.network: str | None = None

    def stage(self, built: BuiltBox) -> None:
        """Copy the box image where QEMU can read it (untimed, like vagrant's pool upload)."""
        self.dir.mkdir(mode=0o755)
        self.dir.chmod(0o755)
        shutil.copyfile(built.image, self.base)
        check_qemu_can_open(self.base)

    def prepare(self, host: LibvirtHost, built: BuiltBox) -> None:
        """Network, overlays, config drives and domain definitions."""
        key_path, public_key = ensure_ssh_key(self.dir / "state")
        inputs = RenderInputs(
            ssh_public_key=public_key,
            ssh_private_key_path=key_path,
            discovery_url=None,
            box_name=built.vagrant_name,
            box_version=None,
            driver=self.accel.driver,
        )
        files = render_lab(self.config, inputs, fragments={})
        hosts = [DhcpHost(n.name, n.mac, ipaddress.IPv4Address(n.ip)) for n in self.config.nodes]
        bridge = "bench-" + hashlib.sha256(self.name.encode()).hexdigest()[:9]
        spec = dataclasses.replace(
            lab_network(self.name, self.config.subnet, hosts), name=self.name, bridge=bridge
        )
        self.network = spec.name
        host.ensure_network(spec)
        for node in self.config.nodes:
            guest = FloorGuest(
                domain=f"{self.name}-{node.name}",
                hostname=node.name,
                ip=node.ip,
                mac=node.mac,
                memory_mib=self.config.vm_memory,
                cpus=self.config.vm_cpus,
                disk=self.dir / f"{node.name}.qcow2",
                config_drive=self.dir / f"{node.name}-config-2.iso",
                console_log=self.dir / f"{node.name}-console.log",
                network=spec.name,
            )
            overlay(self.base, guest.disk)
            build_config_drive(
                files[f"nodes/{node.name}/user-data"],
                meta_data(node.name, node.ip, {"lab": public_key}),
                guest.config_drive,
            )
            self.defined.append(guest.domain)
            try:
                host.connection.defineXML(render_domain_xml(guest, self.accel))
            except libvirt.libvirtError as exc:
                raise HostError(f"cannot define {guest.domain}: {exc}") from exc
            self.guests.append(guest)

    def boot(self, host: LibvirtHost) -> float:
        """Start every domain; returns when the first one was asked to start (monotonic)."""
        started = time.monotonic()
        for guest in self.guests:
            try:
                host.connection.lookupByName(guest.domain).create()
            except libvirt.libvirtError as exc:
                raise HostError(f"cannot start {guest.domain}: {exc}") from exc
        return started

    def wait(self, deadline: float) -> tuple[float, float, float]:
        """Until every guest sent its SSH banner and etcd is 3/3 healthy (monotonic times)."""
        seen = watch_guests(
            self.name,
            [g.ip for g in self.guests],
            deadline,
            threading.Event(),
            hint=f"serial consoles in {self.dir}",
        )
        assert seen is not None  # never stopped, so it returned or raised
        return seen

    def console_tails(self, lines: int = 15) -> str:
        out = []
        for guest in self.guests:
            with contextlib.suppress(OSError):
                text = guest.console_log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {guest.domain} console (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(out)

    def cleanup(self, host: LibvirtHost, keep_logs: Path | None = None) -> list[str]:
        """Remove the domains, network and files; returns what was removed. Idempotent.

        With ``keep_logs`` the serial consoles are copied there first.
        """
        removed = []
        names = set(self.defined) | {
            d.name() for d in host.connection.listAllDomains(0) if d.name().startswith(self.name)
        }
        for name in sorted(names):
            try:
                dom = host.connection.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
            removed.append(name)
        self.defined.clear()
        if self.network and host.remove_network(self.network):
            removed.append(self.network)
        self.network = None
        if keep_logs is not None:
            for guest in self.guests:
                if guest.console_log.exists():
                    shutil.copyfile(guest.console_log, keep_logs / guest.console_log.name)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        return removed


def overlay(base: Path, target: Path) -> None:
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise HostError(f"qemu-img create {target} failed: {result.stderr.strip()}")


def ssh_banner(ip: str, connect_timeout: float = 1.0, read_timeout: float = 15.0) -> bool:
    """True once sshd on ``ip`` sends its banner.

    Connecting fails fast until the guest is up (short timeout, frequent
    retries); once connected, a guest busy under emulation may take seconds to
    answer, and waiting for it counts from the connection, not from a retry.
    """
    try:
        with socket.create_connection((ip, 22), timeout=connect_timeout) as sock:
            sock.settimeout(read_timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def watch_guests(
    subject: str, ips: Sequence[str], deadline: float, stop: threading.Event, hint: str
) -> tuple[float, float, float] | None:
    """When (monotonic) the first and the last guest sent an SSH banner, and etcd got healthy.

    Healthy: every member's ``/health`` says true and every member has started
    (as lab's own check: endpoint health plus a complete member list). None if
    ``stop`` is set first; WaitTimeout at the deadline.
    """
    done = threading.Event()
    with ThreadPoolExecutor(max_workers=2 * len(ips)) as pool:
        banners = [pool.submit(wait_for_banner, ip, deadline, done) for ip in ips]
        try:
            healthy = wait_healthy(subject, pool, ips, deadline, stop, hint)
            if healthy is None:
                return None
            seen = [b.result(timeout=max(1.0, deadline - time.monotonic())) for b in banners]
        finally:
            done.set()
    times = sorted(at for at in seen if at is not None)
    if len(times) != len(ips):
        raise WaitTimeout(subject, "etcd is healthy but not every guest sent an SSH banner")
    return times[0], times[-1], healthy


def wait_healthy(
    subject: str,
    pool: ThreadPoolExecutor,
    ips: Sequence[str],
    deadline: float,
    stop: threading.Event,
    hint: str,
) -> float | None:
    last = "no answer yet"
    while not stop.is_set():
        health = list(pool.map(etcd_member_healthy, ips))
        if all(health):
            members = etcd_started_members(ips[0])
            if len(members) == len(ips):
                return time.monotonic()
            last = f"{len(members)} of {len(ips)} members started"
        else:
            last = "healthy: " + ", ".join(
                f"{ip} {'yes' if ok else 'no'}" for ip, ok in zip(ips, health, strict=True)
            )
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                subject,
                f"etcd did not report {len(ips)}/{len(ips)} healthy in time; last: {last}",
                hint=hint,
            )
        stop.wait(POLL_SECONDS)
    return None


def boot_times(began: float, booted: float, seen: tuple[float, float, float]) -> BootTimes:
    first, every, healthy = seen
    return BootTimes(booted - began, first - booted, every - booted, healthy - booted)


class Watcher:
    """:func:`watch_guests` in a thread, for guests someone else (`lab up`) boots."""

    def __init__(self, subject: str, ips: Sequence[str], deadline: float) -> None:
        self.stop = threading.Event()
        self.seen: tuple[float, float, float] | None = None
        self.error: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(subject, ips, deadline), name="watcher", daemon=True
        )

    def _run(self, subject: str, ips: Sequence[str], deadline: float) -> None:
        try:
            self.seen = watch_guests(subject, ips, deadline, self.stop, hint="see lab's logs")
        except LabError as exc:
            self.error = exc.message

    def start(self) -> None:
        self._thread.start()

    def finish(self, grace: float) -> tuple[float, float, float] | None:
        """What it saw, waiting up to ``grace`` seconds for it to catch up."""
        self._thread.join(timeout=grace)
        self.stop.set()
        self._thread.join(timeout=30)
        return self.seen


def wait_for_banner(ip: str, deadline: float, stop: threading.Event) -> float | None:
    """When (monotonic) the guest's sshd first sent its banner; None at the deadline or stop."""
    while not stop.is_set() and time.monotonic() < deadline:
        if ssh_banner(ip):
            return time.monotonic()
        stop.wait(POLL_SECONDS)
    return None


def etcd_member_healthy(ip: str) -> bool:
    return member_health(f"http://{ip}:2379", timeout=2.0) is True


def etcd_started_members(ip: str) -> tuple[str, ...]:
    try:
        return EtcdHttp([f"http://{ip}:2379"], timeout=2.0).started_members()
    except LabError:
        return ()


# --- host facts -------------------------------------------------------------------


def used_networks(host: LibvirtHost) -> list[ipaddress.IPv4Network]:
    nets = [parse_network_xml(n.XMLDesc(0)).subnet for n in host.connection.listAllNetworks(0)]
    result = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10, check=False
    )
    return [n for n in nets if n.prefixlen < 32] + parse_ip_addr_networks(result.stdout)


def pool_volumes(host: LibvirtHost, pool: str = "default") -> dict[str, str]:
    """Volume name -> path in ``pool`` (empty if the pool does not exist yet)."""
    try:
        pool_obj = host.connection.storagePoolLookupByName(pool)
    except libvirt.libvirtError:
        return {}
    if not pool_obj.isActive():
        return {}
    pool_obj.refresh(0)
    return {vol.name(): vol.path() for vol in pool_obj.listAllVolumes(0)}


def read_through(path: Path) -> None:
    """Read a file once so the page cache holds it (both runs then start warm)."""
    with path.open("rb") as handle:
        while handle.read(1 << 22):
            pass


def leftovers(host: LibvirtHost, run_id: str) -> list[str]:
    """Everything in libvirt whose name carries this run's id."""
    conn = host.connection
    names = [d.name() for d in conn.listAllDomains(0)]
    names += [n.name() for n in conn.listAllNetworks(0)]
    names += list(pool_volumes(host))
    return sorted(n for n in names if run_id in n)


# --- the run ----------------------------------------------------------------------------


class Cleanups:
    """Teardown steps, run last-registered first; each one's failure is reported, not fatal."""

    def __init__(self, results: Results) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []
        self.results = results

    def add(self, label: str, step: Callable[[], object]) -> None:
        self.steps.append((label, step))

    def run(self) -> None:
        while self.steps:
            label, step = self.steps.pop()
            try:
                outcome = step()
                if outcome:
                    say(f"cleanup: {label}: {outcome}")
            except Exception as exc:  # noqa: BLE001 - every step runs; failures are reported
                self.results.errors.append(f"cleanup {label}: {exc}")
                say(f"cleanup: {label} FAILED: {exc}")


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


def logs_cleanup(logs: Path, keep_logs: Callable[[], bool]) -> Callable[[], object]:
    def step() -> object:
        if keep_logs():
            return f"logs kept in {logs}"
        shutil.rmtree(logs, ignore_errors=True)
        return None

    return step


class Bench:
    """One run: setup, the floor, then lab up / verify / destroy; teardown is in ``cleanups``."""

    def __init__(
        self,
        args: argparse.Namespace,
        results: Results,
        sampler: HostSampler,
        cleanups: Cleanups,
    ) -> None:
        self.args = args
        self.results = results
        self.sampler = sampler
        self.cleanups = cleanups
        self.run_id = results.run_id
        self.workdir = Path(args.workdir)
        self.logs = self.workdir / f"bench-logs-{self.run_id}"
        self.accel = choose_accel()

    def keep_logs(self) -> bool:
        return bool(self.args.keep_logs or self.results.errors)

    def run(self) -> None:
        from provisioner.hypervisor.daemons import ensure_daemons, ensure_default_pool

        self.logs.mkdir(mode=0o755)
        self.cleanups.add("logs", logs_cleanup(self.logs, self.keep_logs))
        ensure_daemons(start=True)
        ensure_default_pool(create=True)
        host = LibvirtHost.open()
        self.cleanups.add("libvirt connection", host.close)
        self.describe_host(host)
        built = self.box()
        floor_net, lab_net, warm_net = pick_subnets(used_networks(host), 3)
        lab = self.new_lab(lab_net)
        # The box's one-time upload into the libvirt pool is not part of any timed run.
        if box_uploaded(pool_volumes(host), built.vagrant_name):
            self.results.warmup = {"needed": False}
            say("box already in the libvirt pool: no warm-up needed")
        else:
            self.warm_up(self.workdir / f"bench-warm-{self.run_id}", warm_net)
        for number in range(1, self.args.rounds + 1):
            # the host's speed drifts from minute to minute: each round times the floor
            # and then lab up, and the ratios' median is the figure
            tag = "" if number == 1 else f" #{number}"
            if number > 1:  # a lab directory of its own, as the floor has
                lab = self.new_lab(lab_net, f"r{number}")
            floor = self.floor(host, built, lab, floor_net, tag)
            # The floor's base image is in the page cache from staging; read
            # vagrant-libvirt's copy once too, so both runs start warm.
            prefix = volume_prefix(built.vagrant_name)
            for name, path in pool_volumes(host).items():
                if name.startswith(prefix):
                    read_through(Path(path))
            up = self.lab(host, lab, tag, verify=number == 1)
            if up is not None:
                self.results.rounds.append({"floor": floor.total, "lab_up": up})
                say(f"round {number}: ratio {up / floor.total:.2f}")

    def new_lab(self, subnet: ipaddress.IPv4Network, suffix: str = "") -> LabConfig:
        name = f"bench-up-{self.run_id}{suffix}"
        directory = self.workdir / name
        self.cleanups.add(f"lab {name}", lab_cleanup(directory, name, self.logs, self.keep_logs))
        make_lab_dir(directory, name, subnet)
        return load_config(
            directory, Overrides(num_instances=self.args.nodes, discovery=self.args.discovery)
        )

    def describe_host(self, host: LibvirtHost) -> None:
        others = other_domains(host, self.run_id)
        self.results.host = {
            "cpus": os.cpu_count(),
            "accel": self.accel.accel,
            "accel_reason": self.accel.reason,
            "load_at_start": load(),
            "other_running_domains": others,
        }
        say(f"accel {self.accel.accel} ({self.accel.reason})")
        say(
            "load average {:.2f} {:.2f} {:.2f}; ".format(*load())
            + f"{len(others)} other running domains: {', '.join(others) or '-'}"
        )

    def box(self) -> BuiltBox:
        started = time.monotonic()
        built = build_box(self.args.box, add_to_vagrant=True)
        self.results.box = {
            "name": built.vagrant_name,
            "cached": built.cached,
            "seconds": time.monotonic() - started,
        }
        say(f"box {built.vagrant_name} ({'cached' if built.cached else 'built'})")
        return built

    def warm_up(self, lab_dir: Path, subnet: ipaddress.IPv4Network) -> None:
        """A 1-node lab, so vagrant-libvirt uploads the box into the pool before any timing."""
        name = lab_dir.name
        cleanup = lab_cleanup(lab_dir, name, self.logs, self.keep_logs)
        self.cleanups.add(f"warm-up lab {name}", cleanup)
        make_lab_dir(lab_dir, name, subnet)
        say(f"warm-up: the box is not in the libvirt pool yet; `lab up --nodes 1` in {lab_dir}")
        log = self.logs / "warm-up.log"
        up = run_lab(lab_dir, ["up", "--nodes", "1", "--discovery", "static"], log, UP_TIMEOUT)
        require_ok(up, "warm-up lab up", log)
        self.results.warmup = {
            "needed": True,
            "seconds": up.seconds,
            "phases": lab_phase_seconds(up.events),
        }
        say(f"warm-up: done in {up.seconds:.1f}s (not counted); removing it")
        say(f"warm-up: {cleanup()}")

    def floor(
        self,
        host: LibvirtHost,
        built: BuiltBox,
        lab: LabConfig,
        subnet: ipaddress.IPv4Network,
        tag: str = "",
    ) -> BootTimes:
        run = self.run_id + (f"r{tag.strip(' #')}" if tag else "")
        floor = Floor(run, self.workdir, lab, subnet, self.accel)
        self.cleanups.add(
            f"floor {floor.name}",
            lambda: floor.cleanup(host, self.logs if self.keep_logs() else None),
        )
        say(f"floor: copying the box image to {floor.base} (not timed)")
        floor.stage(built)
        say(f"floor: {len(floor.config.nodes)} guests on {subnet}, {lab.vm_memory} MiB each")
        try:
            with measured("floor" + tag, self.results, self.sampler, host):
                began = time.monotonic()
                floor.prepare(host, built)
                created = floor.boot(host)
                say("floor: started; waiting for SSH banners and etcd health")
                seen = floor.wait(created + FLOOR_TIMEOUT)
        except LabError:
            print(floor.console_tails(), flush=True)
            raise
        # As for the lab: a guest has started when its QEMU process is seen.
        started = self.sampler.first_start(floor.name, after=began)
        times = boot_times(began, started or created, seen)
        if not tag:
            self.results.floor = times
        say(f"floor{tag}: {describe(times)}")
        say(f"floor{tag}: removed {', '.join(floor.cleanup(host))}")
        return times

    def lab(
        self, host: LibvirtHost, lab: LabConfig, tag: str = "", *, verify: bool = True
    ) -> float | None:
        """lab up (its seconds, None if it failed), verify when asked, then destroy."""
        argv = ["up", "--nodes", str(self.args.nodes)]
        if self.args.discovery:
            argv += ["--discovery", self.args.discovery]
        say(f"lab {' '.join(argv)} in {lab.directory} (subnet {lab.subnet}, {lab.discovery})")
        # The same probes as the floor's watch the lab's guests from outside.
        began = time.monotonic()
        watcher = Watcher(lab.name, [n.ip for n in lab.nodes], began + UP_TIMEOUT)
        watcher.start()
        log_name = "up.log" if not tag else f"up-{tag.strip(' #')}.log"
        try:
            with measured("lab up" + tag, self.results, self.sampler, host):
                up = run_lab(lab.directory, argv, self.logs / log_name, UP_TIMEOUT)
                if not tag:
                    record_lab_up(up, lab, self.results)
                require_ok(up, "lab up" + tag, self.logs / log_name)
        finally:
            seen = watcher.finish(grace=30.0)
        booted = self.sampler.first_start(object_prefix(lab.name), after=began)
        if seen is None or booted is None:
            problem = watcher.error or "no QEMU process of the lab was seen"
            self.results.errors.append(f"watching lab up{tag}'s guests: {problem}")
        else:
            times = boot_times(began, booted, seen)
            if not tag:
                self.results.lab_boot = times
            say(f"lab up{tag}: {up.seconds:.1f}s; seen from outside: {describe(times)}")
        if verify:
            self.verify(host, lab)
        self.destroy(host, lab, tag)
        return up.seconds

    def verify(self, host: LibvirtHost, lab: LabConfig) -> None:
        say("lab verify")
        log = self.logs / "verify.log"
        with measured("lab verify", self.results, self.sampler, host):
            checked = run_lab(lab.directory, ["verify"], log, VERIFY_TIMEOUT, echo=False)
        self.results.tool_cpu["lab verify"] = checked.cpu_seconds
        self.results.verify_ok = checked.returncode == 0
        for line in checked.stdout.splitlines()[-4:]:
            print(f"    | {line}", flush=True)
        if not self.results.verify_ok:
            self.results.errors.append(f"lab verify exited {checked.returncode}; see {log}")

    def destroy(self, host: LibvirtHost, lab: LabConfig, tag: str = "") -> None:
        say("lab destroy" + tag)
        log = self.logs / ("destroy.log" if not tag else f"destroy-{tag.strip(' #')}.log")
        with measured("lab destroy" + tag, self.results, self.sampler, host):
            gone = run_lab(lab.directory, ["destroy"], log, DESTROY_TIMEOUT, echo=False)
            if not tag:
                self.results.tool_cpu["lab destroy"] = gone.cpu_seconds
            require_ok(gone, "lab destroy" + tag, log)
        print(f"    | {gone.stdout.strip()}", flush=True)


def describe(times: BootTimes) -> str:
    return (
        f"first guest started after {times.prep:.1f}s; since then: first SSH banner "
        f"{times.first_banner:.1f}s, all {times.all_banners:.1f}s, "
        f"etcd healthy {times.healthy:.1f}s"
    )


def record_lab_up(up: LabRun, lab: LabConfig, results: Results) -> None:
    """Phase times (the CLI's final line, else the progress lines) and milestones."""
    phases = lab_phase_seconds(up.events)
    summary = parse_phase_summary(up.stdout)
    box_detail = next(
        (e.detail for e in up.events if (e.subject, e.phase, e.status) == ("lab", "box", "ok")),
        "",
    )
    marks = lab_milestones(up.events, len(lab.nodes))
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


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM: forward SIGINT to a running `lab` command, then unwind like Ctrl-C."""
    for child in list(_children):
        with contextlib.suppress(OSError):
            child.send_signal(signal.SIGINT)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--nodes", type=int, default=3, help="nodes in both runs (default 3)")
    parser.add_argument(
        "--discovery", help="passed to `lab up` (default: lab's own default); the floor is static"
    )
    parser.add_argument("--box", default="default", help="box recipe (default: default)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="floor-then-lab rounds; the host's speed drifts, so the median ratio is the "
        "figure (verify runs in the first round only; default 1)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs also when the run succeeds"
    )
    parser.add_argument(
        "--workdir", default="/var/tmp", help="where the bench-* directories go (default /var/tmp)"
    )
    args = parser.parse_args(argv)

    os.umask(0o022)
    # Ctrl-C raises KeyboardInterrupt even when started in the background with SIGINT
    # ignored, and `lab` children then get the default disposition (they clean up too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    run_id = os.urandom(3).hex()
    results = Results(
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), run_id=run_id
    )
    sampler = HostSampler(run_id)
    sampler.start()
    cleanups = Cleanups(results)
    say(f"bench_up run {run_id}")
    try:
        Bench(args, results, sampler, cleanups).run()
    except LabError as exc:
        results.errors.append(exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))
    except KeyboardInterrupt:
        results.errors.append("interrupted")
    except Exception as exc:  # noqa: BLE001 - a bug still gets cleanup, summary and JSON
        traceback.print_exc()
        results.errors.append(f"unexpected error: {exc!r}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup runs to the end
        say("cleaning up")
        cleanups.run()
        with contextlib.suppress(LabError), LibvirtHost.open() as host:
            results.leftovers = leftovers(host, run_id)
        sampler.stop()
        print_summary(results)
        if args.json:
            args.json.write_text(json.dumps(results.to_json(), indent=2) + "\n")
            print(f"figures written to {args.json}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())

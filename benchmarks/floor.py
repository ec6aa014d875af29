"""The floor: the box booted three times straight from libvirt, no lab and no Vagrant.

:class:`Floor` writes the domain XML (:func:`render_domain_xml`), qcow2
overlays, a config-2 ISO per guest with a static-etcd cloud-config rendered by
:mod:`provisioner.render`, and one isolated network with DHCP reservations.
:func:`watch_guests` times the guests from the host, the floor's and `lab
up`'s alike: the first and the last SSH banner, then etcd answering healthy
over HTTP with every member started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import libvirt

from provisioner.accel import AccelChoice
from provisioner.box.build import BuiltBox
from provisioner.config import LabConfig, Overrides, build_config
from provisioner.configdrive import build_config_drive, meta_data
from provisioner.errors import HostError, LabError, WaitTimeout
from provisioner.etcdhttp import EtcdHttp, member_health
from provisioner.hypervisor.libvirt import LibvirtHost, check_qemu_can_open
from provisioner.hypervisor.network import DhcpHost, lab_network
from provisioner.readiness import ssh_banner
from provisioner.render import RenderInputs, render_lab
from provisioner.state import ensure_ssh_key
from tests.qemu_support import overlay

FLOOR_TIMEOUT = 900.0  # three TCG guests on a shared 2-core host: boot to etcd healthy
POLL_SECONDS = 0.5


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


def boot_times(began: float, booted: float, seen: tuple[float, float, float]) -> BootTimes:
    first, every, healthy = seen
    return BootTimes(booted - began, first - booted, every - booted, healthy - booted)


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
        # connecting fails fast until the guest is up; once connected, a guest busy
        # under emulation may take seconds to answer
        if ssh_banner(ip, timeout=1.0, read_timeout=15.0) is not None:
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

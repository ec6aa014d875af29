"""Make sure libvirt's daemons run and ``qemu:///system`` answers.

Machines without systemd as PID 1 (containers, CI sandboxes) start nothing on
their own: there ``virtlogd -d`` and ``libvirtd -d`` are started directly. On a
systemd host the units are started with systemctl.
"""

from __future__ import annotations

import grp
import os
import stat
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt

from provisioner.errors import HostError, NotReady
from provisioner.hypervisor.libvirt import SYSTEM_URI, connect
from provisioner.remote.local import LocalRunner
from provisioner.remote.runner import Runner, describe_failure
from provisioner.waits import wait_for

DAEMONS = ("virtlogd", "libvirtd")
KVM_DEVICE = Path("/dev/kvm")
KVM_GROUP = "kvm"  # the group QEMU runs in under qemu:///system (Debian: libvirt-qemu:kvm)
DEFAULT_POOL = "default"
DEFAULT_POOL_PATH = Path("/var/lib/libvirt/images")
_START_TIMEOUT = 30.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DaemonStatus:
    """Which libvirt daemons were found running and which this call started."""

    running: tuple[str, ...]
    started: tuple[str, ...]
    uri: str
    kvm_device_fixed: bool = False

    @property
    def summary(self) -> str:
        started = f"; started {', '.join(self.started)}" if self.started else ""
        fixed = f"; gave group {KVM_GROUP} access to {KVM_DEVICE}" if self.kvm_device_fixed else ""
        return f"{self.uri} answers{started}{fixed}"


@dataclass(frozen=True)
class PoolStatus:
    """The storage pool vagrant-libvirt puts volumes in, and what was done to it."""

    name: str
    path: Path
    created: bool
    started: bool

    @property
    def changed(self) -> bool:
        return self.created or self.started

    @property
    def summary(self) -> str:
        done = "created" if self.created else "started" if self.started else "active"
        return f"pool {self.name!r} at {self.path}: {done}"


def is_systemd_booted(run_dir: Path = Path("/run/systemd/system")) -> bool:
    """sd_booted(3): systemd is PID 1 exactly when this directory exists."""
    return run_dir.is_dir()


def running_programs(proc: Path = Path("/proc")) -> frozenset[str]:
    """Names (``comm``) of every process visible in ``proc``."""
    names = set()
    for comm in proc.glob("[0-9]*/comm"):
        try:
            names.add(comm.read_text().strip())
        except OSError:  # the process exited while we looked
            continue
    return frozenset(names)


def start_commands(missing: tuple[str, ...], *, systemd: bool) -> list[list[str]]:
    """The commands that start the ``missing`` daemons, in order."""
    if not missing:
        return []
    if systemd:
        return [["systemctl", "start", *(f"{name}.service" for name in missing)]]
    return [[name, "-d"] for name in missing]


def kvm_device_needs_access(mode: int, gid: int, kvm_gid: int) -> bool:
    """True if the kvm group cannot read and write a device with this mode and group."""
    return gid != kvm_gid or mode & 0o060 != 0o060


def ensure_kvm_device_access(
    *, fix: bool = True, device: Path = KVM_DEVICE, group: str = KVM_GROUP
) -> bool:
    """Give group ``kvm`` read-write access to /dev/kvm, as udev does on ordinary hosts.

    Without udev the device stays root-only (0600). libvirt then judges its cached
    QEMU capabilities stale on every use (KVM was probed but the qemu user cannot
    open it) and re-probes QEMU before each domain definition: ~30-50 s per
    `vagrant up` step under TCG instead of none. Returns True if it changed the
    device; with ``fix=False`` a wrong device is a HostError instead.
    """
    try:
        kvm_gid = grp.getgrnam(group).gr_gid
        info = device.stat()
    except (KeyError, FileNotFoundError):
        return False  # no kvm group or no device: nothing for libvirt to trip over
    if not kvm_device_needs_access(info.st_mode, info.st_gid, kvm_gid):
        return False
    hint = f"chgrp {group} {device} && chmod g+rw {device}"
    if not fix:
        raise HostError(
            f"{device} is not readable and writable by group {group}: libvirt re-probes QEMU"
            " before every domain definition (slow)",
            hint=f"run `lab doctor --fix`, or: {hint}",
        )
    try:
        os.chown(device, -1, kvm_gid)
        device.chmod(stat.S_IMODE(info.st_mode) | 0o060)
    except PermissionError as exc:
        raise HostError(f"cannot give group {group} access to {device}: {exc}", hint=hint) from exc
    return True


def ensure_daemons(
    *,
    start: bool = True,
    runner: Runner | None = None,
    uri: str = SYSTEM_URI,
    timeout: float = _START_TIMEOUT,
    proc: Path = Path("/proc"),
) -> DaemonStatus:
    """Start virtlogd and libvirtd if they are not running; wait until ``uri`` answers.

    Also makes /dev/kvm usable by QEMU's group (see :func:`ensure_kvm_device_access`).
    With ``start=False`` nothing is changed: a missing daemon is a HostError.
    """
    runner = runner or LocalRunner()
    present = running_programs(proc)
    missing = tuple(name for name in DAEMONS if name not in present)
    systemd = is_systemd_booted()
    kvm_fixed = ensure_kvm_device_access(fix=start)
    if missing and not start:
        commands = "; ".join(" ".join(argv) for argv in start_commands(missing, systemd=systemd))
        raise HostError(f"not running: {', '.join(missing)}", hint=f"start them: {commands}")
    for argv in start_commands(missing, systemd=systemd):
        result = runner.run(argv, timeout=timeout)
        if result.failed:
            raise HostError(
                describe_failure(runner.name, argv, result),
                hint="check /var/log/libvirt/ and that libvirt-daemon-system is installed",
            )
    wait_for_libvirt(uri, timeout=timeout)
    return DaemonStatus(
        running=tuple(name for name in DAEMONS if name in present),
        started=missing,
        uri=uri,
        kvm_device_fixed=kvm_fixed,
    )


def wait_for_libvirt(uri: str = SYSTEM_URI, *, timeout: float = _START_TIMEOUT) -> None:
    """Return once a connection to ``uri`` opens; WaitTimeout after ``timeout`` seconds."""

    def opens() -> bool:
        try:
            conn = connect(uri)
        except HostError as exc:
            raise NotReady(str(exc)) from exc
        conn.close()
        return True

    wait_for(
        "host",
        f"libvirt at {uri} to answer",
        time.monotonic() + timeout,
        opens,
        interval=_POLL_SECONDS,
        hint="start it with `libvirtd -d` (or `systemctl start libvirtd`)",
    )


def render_dir_pool_xml(name: str, path: Path) -> str:
    """A libvirt storage pool of type ``dir`` at ``path``."""
    return (
        f"<pool type='dir'>\n  <name>{escape(name)}</name>\n"
        f"  <target>\n    <path>{escape(str(path))}</path>\n  </target>\n</pool>\n"
    )


def ensure_default_pool(
    *,
    create: bool = True,
    uri: str = SYSTEM_URI,
    name: str = DEFAULT_POOL,
    path: Path = DEFAULT_POOL_PATH,
) -> PoolStatus:
    """:func:`ensure_storage_pool` on its own connection to ``uri``."""
    conn = connect(uri)
    try:
        return ensure_storage_pool(conn, name, path, create=create)
    finally:
        conn.close()


def ensure_storage_pool(
    conn: libvirt.virConnect,
    name: str = DEFAULT_POOL,
    path: Path = DEFAULT_POOL_PATH,
    *,
    create: bool = True,
) -> PoolStatus:
    """Define, build, start and autostart the dir pool ``name`` if it is missing or stopped.

    An existing pool is used wherever it points; only a missing one is created at
    ``path``. With ``create=False`` nothing is changed: a missing or stopped pool
    is a HostError.
    """
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        pool = None
    if (pool is None or not pool.isActive()) and not create:
        state = "missing" if pool is None else "not running"
        raise HostError(
            f"storage pool {name!r} is {state}",
            hint=f"run `lab doctor --fix`, or: virsh pool-define-as {name} dir --target {path}"
            f" && virsh pool-build {name} && virsh pool-start {name}",
        )
    created = pool is None
    if pool is None:
        try:
            pool = conn.storagePoolDefineXML(render_dir_pool_xml(name, path), 0)
            pool.build(0)
        except libvirt.libvirtError as exc:
            raise HostError(
                f"cannot create storage pool {name!r} at {path}: {exc}",
                hint=f"create it by hand: virsh pool-define-as {name} dir --target {path}",
            ) from exc
    started = not pool.isActive()
    if started:
        try:
            pool.create(0)
        except libvirt.libvirtError as exc:
            raise HostError(
                f"cannot start storage pool {name!r}: {exc}", hint=f"virsh pool-start {name}"
            ) from exc
    if create and not pool.autostart():
        pool.setAutostart(1)
    return PoolStatus(
        name=name, path=Path(_pool_path(pool) or path), created=created, started=started
    )


def _pool_path(pool: libvirt.virStoragePool) -> str | None:
    root = ET.fromstring(pool.XMLDesc(0))  # noqa: S314 - XML from the local libvirtd
    return root.findtext("target/path")

"""A typed, thin layer over libvirt-python for what a lab needs.

Networks are planned and compared as data (:mod:`provisioner.hypervisor.network`);
this module only applies them. Domains and volumes are found by the lab's name
prefix (:mod:`provisioner.hypervisor.naming`), so cleanup works without any state
file. Pure XML readers live here beside the class that uses them.
"""

from __future__ import annotations

import contextlib
import enum
import stat
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from provisioner.config import DEFAULT_LIBVIRT_URI
from provisioner.errors import HostError, NodeError, NotReady
from provisioner.hypervisor import volumes
from provisioner.hypervisor.boxvolume import (
    BoxVolume,
    is_complete,
    unused_box_volumes,
    volume_xml,
)
from provisioner.hypervisor.naming import network_name, object_prefix
from provisioner.hypervisor.network import (
    DhcpChanges,
    NetworkSpec,
    dhcp_changes,
    dhcp_host_xml,
    network_conflicts,
    network_differences,
    parse_network_xml,
    render_network_xml,
)
from provisioner.waits import wait_for

SYSTEM_URI = DEFAULT_LIBVIRT_URI


def is_local(uri: str) -> bool:
    """True for libvirt on this host (``qemu:///system``), False for ``qemu+ssh://host/...``."""
    return urlsplit(uri).hostname is None


_POLL_SECONDS = 0.5


T = TypeVar("T")


def call(what: str, action: str, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``, a libvirt error turned into a HostError naming ``what`` and ``action``."""
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        raise HostError(f"{what}: cannot {action}: {exc}") from exc


class DomainState(enum.Enum):
    """libvirt's domain states (virDomainState), by name."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTTING_DOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7

    @property
    def is_active(self) -> bool:
        return self not in (DomainState.SHUTOFF, DomainState.NOSTATE)


@dataclass(frozen=True)
class LabObjects:
    """Everything of one lab found in libvirt (or removed from it)."""

    domains: tuple[str, ...]
    volumes: tuple[str, ...]
    networks: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.domains or self.volumes or self.networks)


def _ignore_libvirt_error(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours arrive as exceptions."""


def connect(uri: str = SYSTEM_URI) -> libvirt.virConnect:
    """Open ``uri``; HostError with a hint when libvirt does not answer."""
    libvirt.registerErrorHandler(_ignore_libvirt_error, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HostError(
            f"cannot connect to libvirt at {uri}: {exc}",
            hint="start libvirtd (`libvirtd -d`, or `systemctl start libvirtd`)",
        ) from exc


def parse_console_log_path(domain_xml: str) -> Path | None:
    """The file the first ``<serial type='file'>`` writes to, if any."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - XML from the local libvirtd
    for serial in root.findall("devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None and source.get("path"):
            return Path(source.get("path", ""))
    return None


def parse_interface_device(domain_xml: str, network: str, bridge: str, mac: str) -> str | None:
    """The tap device (``<target dev='vnetN'/>``) of the domain's interface with ``mac``
    on the lab's network (named ``network``, or plugged into its ``bridge``); None
    when there is none, as for a domain that is not running."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - XML from the local libvirtd
    for interface in root.findall("devices/interface"):
        source = interface.find("source")
        address = interface.find("mac")
        target = interface.find("target")
        if source is None or address is None or target is None:
            continue
        on_lab = source.get("network") == network or source.get("bridge") == bridge
        if on_lab and address.get("address", "").lower() == mac.lower() and target.get("dev"):
            return target.get("dev")
    return None


def parse_disk_paths(domain_xml: str) -> tuple[Path, ...]:
    """Host paths of the domain's file-backed disks (not cdroms)."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - XML from the local libvirtd
    paths = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        if disk.get("device", "disk") != "disk" or source is None:
            continue
        path = source.get("file") or source.get("dev")
        if path:
            paths.append(Path(path))
    return tuple(paths)


def parse_used_files(xml: str) -> set[str]:
    """Files a domain's or volume's XML uses: disk sources and every backing file
    down the chain (a volume's own ``<target><path>`` is not a use)."""
    root = ET.fromstring(xml)  # noqa: S314 - XML from the local libvirtd
    used = set()
    if root.tag == "domain":
        for source in root.iter("source"):
            path = source.get("file") or source.get("dev")
            if path:
                used.add(path)
    for backing in root.iter("backingStore"):
        path_element = backing.find("path")
        if path_element is not None and path_element.text:
            used.add(path_element.text.strip())
    return used


def qemu_unreachable_dir(path: Path) -> Path | None:
    """The first directory above ``path`` that QEMU (an unprivileged user) cannot enter.

    libvirt hands QEMU disk and cdrom files by path and chowns only the file
    itself, so every directory above it needs the "others may search" bit
    (a lab under /root, mode 0700, fails with "Permission denied" at start).
    Serial log files are opened by libvirt itself and are exempt.
    """
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def check_qemu_can_open(path: Path) -> None:
    """HostError naming the blocking directory if QEMU could not open ``path``."""
    blocked = qemu_unreachable_dir(path)
    if blocked is not None:
        raise HostError(
            f"QEMU cannot reach {path}: {blocked} is not searchable by other users",
            hint=f"put the lab elsewhere (e.g. under /srv or /var/tmp) or `chmod o+x {blocked}`",
        )


class LibvirtHost:
    """Side effects on one libvirt connection. Use as a context manager."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self._conn = conn

    @classmethod
    def open(cls, uri: str = SYSTEM_URI) -> LibvirtHost:
        return cls(connect(uri))

    @property
    def connection(self) -> libvirt.virConnect:
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LibvirtHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- networks -----------------------------------------------------------

    def find_network(self, name: str) -> NetworkSpec | None:
        """The network called ``name`` as a spec, or None if it is not defined."""
        net = self._lookup_network(name)
        return None if net is None else parse_network_xml(net.XMLDesc(0))

    def ensure_network(self, spec: NetworkSpec) -> bool:
        """Make ``spec`` exist and run; True if it was created now.

        An existing network of the same name is reused when it matches and is a
        HostError listing every difference when it does not.
        """
        net = self._lookup_network(spec.name)
        created = net is None
        if net is None:
            others = [parse_network_xml(n.XMLDesc(0)) for n in self._conn.listAllNetworks(0)]
            conflicts = network_conflicts(spec, others)
            if conflicts:
                raise HostError(
                    f"cannot create network {spec.name}: " + "; ".join(conflicts),
                    hint="set `subnet:` in lab.yaml to a free private /24 (e.g. 192.168.57.0/24)",
                )
            try:
                net = self._conn.networkDefineXML(render_network_xml(spec))
            except libvirt.libvirtError as exc:
                raise HostError(f"cannot define network {spec.name}: {exc}") from exc
        else:
            differences = network_differences(spec, parse_network_xml(net.XMLDesc(0)))
            if differences:
                raise HostError(
                    f"network {spec.name} exists but differs: " + "; ".join(differences),
                    hint=f"remove it (`virsh net-destroy {spec.name}; virsh net-undefine"
                    f" {spec.name}`) or destroy the lab, then retry",
                )
        if not net.isActive():
            try:
                net.create()
            except libvirt.libvirtError as exc:
                raise HostError(
                    f"cannot start network {spec.name}: {exc}",
                    hint="another interface may already use the subnet; pick another one",
                ) from exc
        return created

    def update_dhcp_hosts(self, spec: NetworkSpec) -> DhcpChanges:
        """Bring the running network's DHCP reservations to ``spec``'s, live and in its
        persistent config (libvirt's network update: no restart, guests keep their
        leases). Everything else about the network must already match. Returns what
        changed (nothing when it already matched: a re-run changes nothing)."""
        net = self._lookup_network(spec.name)
        if net is None:
            raise HostError(
                f"network {spec.name} does not exist",
                hint="the lab is not up; `lab up` makes it",
            )
        actual = parse_network_xml(net.XMLDesc(0))
        others = [d for d in network_differences(spec, actual) if "DHCP reservation" not in d]
        if others:
            raise HostError(
                f"network {spec.name} differs: " + "; ".join(others),
                hint="destroy the lab and bring it up again",
            )
        changes = dhcp_changes(spec, actual)
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
        for command, hosts in (
            (libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, changes.delete),
            (libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, changes.add),
        ):
            for host in hosts:
                self._call(
                    spec.name,
                    f"update DHCP reservation {host.name} {host.ip}",
                    net.update,
                    command,
                    section,
                    -1,
                    dhcp_host_xml(host),
                    flags,
                )
        return changes

    def remove_network(self, name: str) -> bool:
        """Stop and undefine the network ``name``; False if there was none."""
        net = self._lookup_network(name)
        if net is None:
            return False
        try:
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
        except libvirt.libvirtError as exc:
            raise HostError(
                f"cannot remove network {name}: {exc}",
                hint="domains still attached to it must be destroyed first",
            ) from exc
        return True

    # -- finding a lab's objects ---------------------------------------------

    def lab_objects(self, lab: str, pool: str = "default") -> LabObjects:
        """Every domain, volume (in ``pool``) and network that carries ``lab``'s name."""
        prefix = object_prefix(lab)
        domains = sorted(d.name() for d in self._conn.listAllDomains(0))
        networks = sorted(n.name() for n in self._conn.listAllNetworks(0))
        return LabObjects(
            domains=tuple(d for d in domains if d.startswith(prefix)),
            volumes=tuple(v for v in self._volume_names(pool) if v.startswith(prefix)),
            networks=tuple(n for n in networks if n == network_name(lab) or n.startswith(prefix)),
        )

    # -- domains ------------------------------------------------------------

    def state(self, domain: str) -> DomainState:
        state, _reason = self._domain(domain).state()
        return DomainState(state)

    def start(self, domain: str) -> None:
        """Boot a defined, shut-off domain; nothing if it already runs."""
        dom = self._domain(domain)
        if dom.isActive():
            return
        self._call(domain, "start", dom.create)

    def power_off(self, domain: str) -> None:
        """Pull the plug (virDomainDestroy); nothing if it is already off."""
        dom = self._domain(domain)
        if dom.isActive():
            self._call(domain, "power off", dom.destroy)

    def suspend(self, domain: str) -> None:
        """Pause a running domain's CPUs (its memory and devices stay as they are)."""
        dom = self._domain(domain)
        if DomainState(dom.state()[0]) is DomainState.RUNNING:
            self._call(domain, "pause", dom.suspend)

    def resume(self, domain: str) -> None:
        """Let a paused domain run again; nothing if it is not paused."""
        dom = self._domain(domain)
        if DomainState(dom.state()[0]) is DomainState.PAUSED:
            self._call(domain, "resume", dom.resume)

    def domain(self, name: str) -> libvirt.virDomain:
        """The libvirt domain ``name`` (NodeError with a hint when it does not exist)."""
        return self._domain(name)

    def shutdown(self, domain: str, *, timeout: float) -> None:
        """Ask the guest to shut down (ACPI) and wait until it is off."""
        dom = self._domain(domain)
        if not dom.isActive():
            return
        self._call(domain, "shut down", dom.shutdown)

        def off() -> bool:
            if dom.isActive():
                raise NotReady(f"state {self.state(domain).name}")
            return True

        wait_for(
            domain,
            f"a clean shutdown ({timeout:g}s)",
            time.monotonic() + timeout,
            off,
            interval=_POLL_SECONDS,
            hint="power it off instead (virsh destroy)",
        )

    def interface_device(self, domain: str, network: str, bridge: str, mac: str) -> str | None:
        """The tap device of the domain's interface with ``mac`` on the lab network now
        (a domain's tap changes each time it starts); None when it is not running."""
        dom = self._domain(domain)
        if not dom.isActive():
            return None
        return parse_interface_device(dom.XMLDesc(0), network, bridge, mac)

    def console_log_path(self, domain: str) -> Path | None:
        """Where the domain's serial console is logged, if it is logged to a file."""
        return parse_console_log_path(self._domain(domain).XMLDesc(0))

    def undefine(self, domain: str, *, remove_volumes: bool = True) -> tuple[str, ...]:
        """Power off and undefine ``domain``, deleting its disks named after it.

        Only volumes whose name starts with the domain's name are deleted (as
        vagrant-libvirt names them), so a box's base image is never touched. Returns the names of
        the deleted volumes.
        """
        dom = self._domain(domain)
        if dom.isActive():
            self._call(domain, "power off", dom.destroy)
        volumes = []
        if remove_volumes:
            for path in parse_disk_paths(dom.XMLDesc(0)):
                volume = self._volume_by_path(path)
                if volume is not None and volume.name().startswith(domain):
                    volumes.append(volume)
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError:
            # Drivers without these features refuse the flags; plain undefine is
            # then equivalent (there is nothing to drop).
            self._call(domain, "undefine", dom.undefine)
        removed = []
        for volume in volumes:
            name = volume.name()
            self._call(domain, f"delete volume {name}", volume.delete, 0)
            removed.append(name)
        return tuple(removed)

    def remove_lab(self, lab: str, pool: str = "default") -> LabObjects:
        """Power off and remove every domain, volume and network of ``lab``."""
        found = self.lab_objects(lab, pool)
        volumes: list[str] = []
        for domain in found.domains:
            volumes.extend(self.undefine(domain))
        pool_obj = self._pool(pool)
        if pool_obj is not None:
            for name in self.lab_objects(lab, pool).volumes:
                vol = pool_obj.storageVolLookupByName(name)
                self._call(lab, f"delete volume {name}", vol.delete, 0)
                volumes.append(name)
        for net in found.networks:
            self.remove_network(net)
        return LabObjects(found.domains, tuple(sorted(volumes)), found.networks)

    # -- files of the guests, as pool volumes (see hypervisor.volumes) ---------

    def upload_volume(self, pool: str, name: str, source: Path) -> str:
        """``source`` as the raw volume ``name`` of ``pool`` (made or overwritten); its path."""
        return volumes.upload(self._conn, volumes.pool(self._conn, pool), name, source)

    def ensure_empty_volume(self, pool: str, name: str) -> str:
        """The raw volume ``name`` of ``pool``, made empty if missing; its path."""
        return volumes.ensure_empty(volumes.pool(self._conn, pool), name)

    def delete_volume(self, pool: str, name: str) -> bool:
        """Delete the volume ``name`` of ``pool``; False if there is none."""
        found = volumes.pool(self._conn, pool)
        try:
            volume = found.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return False
        self._call(name, "delete volume", volume.delete, 0)
        return True

    def read_volume(self, pool: str, name: str) -> bytes | None:
        """The bytes of the volume ``name`` of ``pool`` now, or None if there is none."""
        return volumes.download(self._conn, volumes.pool(self._conn, pool), name)

    # -- helpers --------------------------------------------------------------

    def ensure_box_volume(self, volume: BoxVolume, pool: str = "default") -> bool:
        """Upload the box into the pool unless a complete copy is there; True if uploaded.

        A copy shorter than the image (an upload cut short, by lab or by vagrant)
        is deleted and made again; a failed upload removes what it created.
        """
        pool_obj = self._pool(pool)
        if pool_obj is None:
            raise HostError(f"storage pool {pool!r} does not exist", hint="`lab doctor` creates it")
        try:
            existing: libvirt.virStorageVol | None = pool_obj.storageVolLookupByName(volume.name)
        except libvirt.libvirtError:
            existing = None
        if existing is not None:
            physical = existing.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
            if is_complete(physical, volume):
                return False
            self._call(volume.name, "delete the incomplete box volume", existing.delete, 0)
        try:
            created = pool_obj.createXML(volume_xml(volume.name, volume.capacity), 0)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot create volume {volume.name} in pool {pool}: {exc}") from exc
        stream = self._conn.newStream(0)
        try:
            created.upload(stream, 0, volume.size, 0)
            with volume.source.open("rb") as image:
                stream.sendAll(lambda _stream, size, handle: handle.read(size), image)
            stream.finish()
        except BaseException as exc:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                created.delete(0)
            if isinstance(exc, libvirt.libvirtError | OSError):
                raise HostError(f"cannot upload {volume.source} into pool {pool}: {exc}") from exc
            raise
        return True

    def remove_unused_box_volumes(
        self, kept_boxes: Collection[str], pool: str = "default"
    ) -> tuple[str, ...]:
        """Delete the pool copies of lab's boxes that the box cache no longer keeps
        and that no volume or domain uses (as a disk or an overlay's backing file);
        the names deleted. Call it under the host lock, as the upload is."""
        pool_obj = self._pool(pool)
        if pool_obj is None or not pool_obj.isActive():
            return ()
        volumes = {vol.name(): vol for vol in pool_obj.listAllVolumes(0)}
        used: set[str] = set()
        for xml in [vol.XMLDesc(0) for vol in volumes.values()] + [
            dom.XMLDesc(0) for dom in self._conn.listAllDomains(0)
        ]:
            used |= parse_used_files(xml)
        paths = {name: vol.path() for name, vol in volumes.items()}
        removed = []
        for name in unused_box_volumes(paths, kept_boxes, used):
            self._call(name, "delete the unused box volume", volumes[name].delete, 0)
            removed.append(name)
        return tuple(removed)

    def _lookup_network(self, name: str) -> libvirt.virNetwork | None:
        try:
            return self._conn.networkLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return None
            raise HostError(f"cannot look up network {name}: {exc}") from exc

    def _domain(self, name: str) -> libvirt.virDomain:
        try:
            return self._conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NodeError(
                    name,
                    "no such libvirt domain",
                    hint="`virsh list --all` shows what exists; was the lab destroyed?",
                ) from exc
            raise HostError(f"cannot look up domain {name}: {exc}") from exc

    def _pool(self, name: str) -> libvirt.virStoragePool | None:
        try:
            pool = self._conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return None
        if pool.isActive():
            pool.refresh(0)
        return pool

    def _volume_names(self, pool: str) -> list[str]:
        pool_obj = self._pool(pool)
        if pool_obj is None or not pool_obj.isActive():
            return []
        return sorted(pool_obj.listVolumes())

    def _volume_by_path(self, path: Path) -> libvirt.virStorageVol | None:
        try:
            return self._conn.storageVolLookupByPath(str(path))
        except libvirt.libvirtError:
            return None

    @staticmethod
    def _call(what: str, action: str, fn: Callable[..., object], *args: object) -> None:
        call(what, action, fn, *args)

"""Snapshots of domains in libvirt: internal checkpoints, disk and memory together.

Why internal snapshots: Debian 12 ships libvirt 9.0 and QEMU 7.2. That libvirt
takes external (overlay-file) snapshots but cannot revert to them (reverting an
external snapshot arrived in libvirt 9.7), so a snapshot a user could never
restore is not a choice. Internal snapshots of qcow2 disks (QEMU's ``savevm``) are
taken, listed, reverted and deleted by this libvirt, carry the guest's memory and
device state, and live inside each node's own qcow2 volume: they disappear with
the disk when the lab is destroyed, and the box's base image (the volume's
backing file) is never written. Read-only disks (the config drive) are left out
of the snapshot; they do not change.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from provisioner.errors import HostError, NodeError
from provisioner.hypervisor.libvirt import LibvirtHost, call


@dataclass(frozen=True)
class DomainSnapshot:
    """One snapshot of one domain, as libvirt lists it."""

    name: str
    created: int  # seconds since the epoch
    state: str  # the domain's state when it was taken ("running", "shutoff", ...)
    description: str


def snapshot_xml(name: str, description: str, domain_xml: str) -> str:
    """An internal checkpoint of every writable disk and the memory; read-only disks out."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = description
    ET.SubElement(root, "memory", snapshot="internal")
    disks = ET.SubElement(root, "disks")
    domain = ET.fromstring(domain_xml)  # noqa: S314 - XML from libvirtd
    for disk in domain.iterfind("./devices/disk"):
        target = disk.find("target")
        if target is None or not target.get("dev"):
            continue
        read_only = disk.get("device") == "cdrom" or disk.find("readonly") is not None
        ET.SubElement(
            disks, "disk", name=target.get("dev", ""), snapshot="no" if read_only else "internal"
        )
    return ET.tostring(root, encoding="unicode")


def parse_snapshot_xml(xml: str) -> DomainSnapshot:
    root = ET.fromstring(xml)  # noqa: S314 - XML from libvirtd
    return DomainSnapshot(
        name=root.findtext("name", ""),
        created=int(root.findtext("creationTime", "0") or 0),
        state=root.findtext("state", ""),
        description=root.findtext("description", ""),
    )


def create(host: LibvirtHost, domain: str, name: str, description: str) -> None:
    """Take snapshot ``name`` of ``domain`` in whatever state it is (paused stays paused)."""
    dom = host.domain(domain)
    xml = snapshot_xml(name, description, dom.XMLDesc(0))
    call(domain, f"take snapshot {name}", dom.snapshotCreateXML, xml, 0)


def listed(host: LibvirtHost, domain: str) -> list[DomainSnapshot]:
    """The domain's snapshots, oldest first."""
    dom = host.domain(domain)
    found: list[libvirt.virDomainSnapshot] = call(domain, "list snapshots", dom.listAllSnapshots, 0)
    snapshots = [parse_snapshot_xml(snap.getXMLDesc(0)) for snap in found]
    return sorted(snapshots, key=lambda s: (s.created, s.name))


def _lookup(host: LibvirtHost, domain: str, name: str) -> libvirt.virDomainSnapshot:
    dom = host.domain(domain)
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise NodeError(domain, f"has no snapshot {name}") from exc
        raise HostError(f"{domain}: cannot look up snapshot {name}: {exc}") from exc


def revert_paused(host: LibvirtHost, domain: str, name: str) -> None:
    """Put ``domain`` back to snapshot ``name``, its CPUs paused (resume them together)."""
    snapshot = _lookup(host, domain, name)
    dom = host.domain(domain)
    call(
        domain,
        f"revert to snapshot {name}",
        dom.revertToSnapshot,
        snapshot,
        libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED,
    )


def delete(host: LibvirtHost, domain: str, name: str) -> None:
    """Remove snapshot ``name`` of ``domain`` (its data in the qcow2 volume too)."""
    snapshot = _lookup(host, domain, name)
    call(domain, f"delete snapshot {name}", snapshot.delete, 0)

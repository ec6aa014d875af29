"""The snapshot XML lab hands libvirt: the writable disk and the memory internal, the
read-only config drive left out (libvirt's domainsnapshot format, formatsnapshot.html)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from provisioner.hypervisor.snapshots import parse_snapshot_xml, snapshot_xml

pytestmark = pytest.mark.unit

DOMAIN = """<domain type='kvm'><name>lab-x_core-01</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='/var/lib/libvirt/images/lab-x_core-01.img'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><source file='/var/lib/libvirt/images/lab-x_core-01-config.iso'/>
  <target dev='hdc' bus='ide'/><readonly/></disk>
<disk type='file' device='disk'><source file='/srv/shared.img'/><target dev='vdb'/>
  <readonly/></disk>
</devices></domain>"""


def test_writable_disks_and_memory_are_internal_read_only_disks_left_out() -> None:
    root = ET.fromstring(snapshot_xml("clean", "lab x: core-01", DOMAIN))
    assert root.findtext("name") == "clean"
    assert root.findtext("description") == "lab x: core-01"
    assert root.find("memory").get("snapshot") == "internal"  # type: ignore[union-attr]
    assert {d.get("name"): d.get("snapshot") for d in root.iterfind("disks/disk")} == {
        "vda": "internal",
        "hdc": "no",
        "vdb": "no",
    }


def test_a_listed_snapshot_reads_back() -> None:
    listed = parse_snapshot_xml(
        "<domainsnapshot><name>clean</name><description>d</description>"
        "<state>paused</state><creationTime>1796642012</creationTime></domainsnapshot>"
    )
    assert (listed.name, listed.created, listed.state) == ("clean", 1796642012, "paused")

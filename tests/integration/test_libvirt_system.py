"""The real libvirtd (qemu:///system): daemons, storage pool, and an isolated lab network.

Only an isolated network with a unique name is created here, and always removed.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import HostError
from provisioner.hypervisor.daemons import (
    DEFAULT_POOL,
    ensure_daemons,
    ensure_default_pool,
    ensure_kvm_device_access,
    running_programs,
)
from provisioner.hypervisor.libvirt import DomainState, LibvirtHost, qemu_unreachable_dir
from provisioner.hypervisor.network import DhcpHost, NetworkSpec, lab_network, parse_network_xml

pytestmark = pytest.mark.integration

DNSMASQ_DIR = Path("/var/lib/libvirt/dnsmasq")
CAPS_CACHE = Path("/var/cache/libvirt/qemu/capabilities")


def reservations(subnet: str | ipaddress.IPv4Network, names: list[str]) -> list[DhcpHost]:
    """Node i at .(100+i) with a MAC ending in i."""
    base = ipaddress.IPv4Network(subnet).network_address
    return [
        DhcpHost(name, f"52:54:00:7e:57:{i:02x}", base + 100 + i)
        for i, name in enumerate(names, start=1)
    ]


@pytest.fixture(scope="module")
def system() -> Iterator[LibvirtHost]:
    ensure_daemons(timeout=60)
    with LibvirtHost.open() as host:
        yield host


@pytest.fixture
def spec(system: LibvirtHost) -> Iterator[NetworkSpec]:
    lab = f"it-{uuid.uuid4().hex[:8]}"
    # A /24 in 10.251.0.0/16 that no other libvirt network uses.
    taken = [parse_network_xml(n.XMLDesc(0)).subnet for n in system.connection.listAllNetworks(0)]
    subnet = next(
        candidate
        for candidate in ipaddress.IPv4Network("10.251.0.0/16").subnets(new_prefix=24)
        if not any(candidate.overlaps(t) for t in taken)
    )
    made = lab_network(lab, subnet, reservations(subnet, ["core-01", "core-02"]))
    try:
        yield made
    finally:
        system.remove_network(made.name)


def test_daemons_run_and_answer(system: LibvirtHost) -> None:
    status = ensure_daemons(start=False, timeout=60)
    assert status.started == ()
    assert status.running == ("virtlogd", "libvirtd")
    assert {"virtlogd", "libvirtd"} <= running_programs()
    assert system.connection.getURI() == "qemu:///system"


def test_kvm_device_access_is_fixed_on_a_stand_in(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    device.write_text("")
    device.chmod(0o600)
    os.chown(device, -1, 0)
    with pytest.raises(HostError, match="not readable and writable by group kvm"):
        ensure_kvm_device_access(fix=False, device=device)
    assert ensure_kvm_device_access(device=device) is True
    info = device.stat()
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (grp.getgrnam("kvm").gr_gid, 0o660)
    assert ensure_kvm_device_access(fix=False, device=device) is False


def test_defining_a_domain_does_not_reprobe_qemu(system: LibvirtHost) -> None:
    """With /dev/kvm usable by QEMU's group, libvirt keeps its capabilities cache.

    The first definition may re-probe once for reasons outside lab (a new libvirtd,
    a changed kernel, microcode or /dev/kvm since the cache was written). After it,
    further definitions must use the cache: a root-only /dev/kvm re-probes every time.
    """

    def define_and_undefine() -> None:
        name = f"lab-it-{uuid.uuid4().hex[:8]}_define"
        system.connection.defineXML(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"
        )
        system.undefine(name)

    define_and_undefine()
    before = {p: p.stat().st_mtime_ns for p in CAPS_CACHE.glob("*.xml")}
    assert before, "libvirt has not cached QEMU's capabilities yet"
    define_and_undefine()
    define_and_undefine()
    assert {p: p.stat().st_mtime_ns for p in CAPS_CACHE.glob("*.xml")} == before


def test_default_storage_pool_is_active(system: LibvirtHost) -> None:
    ensure_default_pool()
    status = ensure_default_pool(create=False)
    assert not status.changed
    assert status.name == DEFAULT_POOL
    assert system.connection.storagePoolLookupByName(DEFAULT_POOL).isActive()


def test_isolated_network_lifecycle(system: LibvirtHost, spec: NetworkSpec) -> None:
    assert system.ensure_network(spec) is True
    assert system.ensure_network(spec) is False
    assert system.find_network(spec.name) == spec

    # The bridge carries the host address .1 on the lab subnet.
    addr = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", spec.bridge],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert f"inet {spec.host_address}/24" in addr

    # dnsmasq serves only the static reservations, no DNS, and advertises no router.
    conf = (DNSMASQ_DIR / f"{spec.name}.conf").read_text()
    assert f"dhcp-range={spec.host_address},static" in conf
    assert "port=0" in conf
    assert "dhcp-option=3\n" in conf
    hosts = (DNSMASQ_DIR / f"{spec.name}.hostsfile").read_text().split()
    assert hosts == [f"{h.mac},{h.ip},{h.name}" for h in spec.hosts]

    assert system.remove_network(spec.name) is True
    assert system.find_network(spec.name) is None
    gone = subprocess.run(
        ["ip", "link", "show", spec.bridge], check=False, capture_output=True, text=True, timeout=10
    )
    assert gone.returncode != 0


def test_existing_network_that_differs_is_refused(system: LibvirtHost, spec: NetworkSpec) -> None:
    system.ensure_network(spec)
    smaller = lab_network(spec.name.removeprefix("lab-"), spec.subnet, spec.hosts[:1])
    with pytest.raises(HostError, match="unexpected DHCP reservation core-02"):
        system.ensure_network(smaller)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can search (pytest's tmp_path sits under a 0700 one)."""
    directory = Path(tempfile.mkdtemp(prefix="lab-it-", dir="/var/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_qemu_needs_searchable_directories(system: LibvirtHost, shared_dir: Path) -> None:
    """The rule qemu_unreachable_dir encodes, checked against a real QEMU start."""
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    iso = private / "drive.iso"
    iso.write_bytes(b"\0" * 2048 * 16)
    name = f"lab-it-{uuid.uuid4().hex[:8]}_probe"
    system.connection.defineXML(
        f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='custom'><model>qemu64</model></cpu>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{iso}'/>
      <target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <serial type='file'><source path='{private / "console.log"}'/><target port='0'/></serial>
  </devices>
</domain>"""
    )
    try:
        assert qemu_unreachable_dir(iso) == private
        with pytest.raises(HostError, match="Permission denied"):
            system.start(name)
        private.chmod(0o711)
        assert qemu_unreachable_dir(iso) is None
        system.start(name)
        assert system.state(name) is DomainState.RUNNING
        # libvirt opens the console log itself: it exists inside the private dir.
        assert system.console_log_path(name) == private / "console.log"
        assert (private / "console.log").exists()
    finally:
        system.undefine(name)


@pytest.fixture
def scratch_pool(system: LibvirtHost, tmp_path: Path) -> Iterator[str]:
    """A directory pool of its own, removed with whatever is in it."""
    name = f"lab-it-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "pool"
    directory.mkdir()
    xml = f"<pool type='dir'><name>{name}</name><target><path>{directory}</path></target></pool>"
    pool = system.connection.storagePoolCreateXML(xml, 0)
    try:
        yield name
    finally:
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()


def test_the_box_is_uploaded_once_and_an_incomplete_copy_again(
    system: LibvirtHost, scratch_pool: str, tmp_path: Path
) -> None:
    from provisioner.hypervisor.boxvolume import BoxVolume

    image = tmp_path / "box.img"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True, timeout=60
    )
    with image.open("ab") as tail:
        tail.write(os.urandom(300_000))  # more than one stream chunk
    volume = BoxVolume("lab-VAGRANTSLASH-it_vagrant_box_image_0_1_box.img", image, 64 << 20,
                       image.stat().st_size)  # fmt: skip
    assert system.ensure_box_volume(volume, scratch_pool) is True
    pool = system.connection.storagePoolLookupByName(scratch_pool)
    copy = Path(pool.storageVolLookupByName(volume.name).path())
    assert copy.read_bytes() == image.read_bytes()
    assert system.ensure_box_volume(volume, scratch_pool) is False

    # a copy cut short (an interrupted upload) is replaced by a whole one
    with copy.open("r+b") as handle:
        handle.truncate(volume.size // 2)
    assert system.ensure_box_volume(volume, scratch_pool) is True
    assert copy.read_bytes() == image.read_bytes()

    with pytest.raises(HostError, match="does not exist"):
        system.ensure_box_volume(volume, f"{scratch_pool}-missing")


def test_old_box_volumes_go_once_nothing_backs_onto_them(
    system: LibvirtHost, scratch_pool: str
) -> None:
    from provisioner.hypervisor.boxvolume import volume_name

    pool = system.connection.storagePoolLookupByName(scratch_pool)

    def volume(name: str, backing: str = "") -> str:
        chain = (
            f"<backingStore><path>{backing}</path><format type='qcow2'/></backingStore>"
            if backing
            else ""
        )
        xml = (
            f"<volume><name>{name}</name><capacity unit='M'>16</capacity>"
            f"<target><format type='qcow2'/></target>{chain}</volume>"
        )
        return str(pool.createXML(xml, 0).path())

    old = volume_name("lab/default-aaaaaaaaaaaa", "0", 1)
    backed = volume_name("lab/default-bbbbbbbbbbbb", "0", 2)
    current = volume_name("lab/default-cccccccccccc", "0", 3)
    volume(old)
    volume("lab-it-overlay_core-01.img", volume(backed))  # a lab's disk on an old box
    volume(current)
    volume("not-lab-VAGRANTSLASH-x_vagrant_box_image_0_1_box.img")

    removed = system.remove_unused_box_volumes(["lab/default-cccccccccccc"], scratch_pool)
    assert removed == (old,)
    left = set(pool.listVolumes())
    assert left == {
        backed,
        current,
        "lab-it-overlay_core-01.img",
        "not-lab-VAGRANTSLASH-x_vagrant_box_image_0_1_box.img",
    }
    # the lab that used the old box is gone: now its copy goes too
    pool.storageVolLookupByName("lab-it-overlay_core-01.img").delete(0)
    assert system.remove_unused_box_volumes(["lab/default-cccccccccccc"], scratch_pool) == (backed,)
    assert system.remove_unused_box_volumes([], "lab-it-no-such-pool") == ()


def test_a_domain_reads_its_drive_and_writes_its_console_as_pool_volumes(
    system: LibvirtHost, shared_dir: Path
) -> None:
    """What `lab up` does for every node instead of pointing QEMU into the lab directory:
    the config drive goes in by a libvirt stream, the console comes back by one."""
    name = f"lab-it-{uuid.uuid4().hex[:8]}"
    directory = shared_dir / "pool"
    directory.mkdir()
    xml = f"<pool type='dir'><name>{name}</name><target><path>{directory}</path></target></pool>"
    pool = system.connection.storagePoolCreateXML(xml, 0)
    drive = shared_dir / "drive.iso"
    drive.write_bytes(os.urandom(2048 * 400))  # more than one stream chunk
    domain = f"{name}_core-01"
    try:
        drive_path = system.upload_volume(name, f"{domain}-config.iso", drive)
        assert Path(drive_path).read_bytes() == drive.read_bytes()
        drive.write_bytes(os.urandom(2048 * 16))  # a new render: a smaller drive replaces it
        assert system.upload_volume(name, f"{domain}-config.iso", drive) == drive_path
        assert Path(drive_path).read_bytes() == drive.read_bytes()
        console_path = system.ensure_empty_volume(name, f"{domain}-console.log")
        assert system.ensure_empty_volume(name, f"{domain}-console.log") == console_path
        assert system.read_volume(name, f"{domain}-console.log") == b""
        assert system.read_volume(name, f"{domain}-nothing.log") is None
        system.connection.defineXML(
            f"""<domain type='qemu'>
  <name>{domain}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='custom'><model>qemu64</model></cpu>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{drive_path}'/>
      <target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <serial type='file'><source path='{console_path}'/><target port='0'/></serial>
  </devices>
</domain>"""
        )
        try:
            system.start(domain)
            assert system.state(domain) is DomainState.RUNNING
            assert system.console_log_path(domain) == Path(console_path)
            with Path(console_path).open("ab") as console:  # what the guest prints
                console.write(b"-----BEGIN SSH HOST KEY FINGERPRINTS-----\n")
            assert system.read_volume(name, f"{domain}-console.log") == (
                b"-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
            )
        finally:
            system.undefine(domain, remove_volumes=False)
    finally:
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()

"""LibvirtHost against libvirt's built-in test:///default driver (no daemon needed)."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import HostError, NodeError
from provisioner.hypervisor.daemons import ensure_storage_pool
from provisioner.hypervisor.libvirt import DomainState, LabObjects, LibvirtHost
from provisioner.hypervisor.naming import domain_name, object_prefix
from provisioner.hypervisor.network import DhcpHost, NetworkSpec, lab_network

pytestmark = pytest.mark.integration

TEST_URI = "test:///default"
POOL = "default-pool"  # the test driver's built-in pool


def lab_net(lab: str, subnet: str, names: list[str]) -> NetworkSpec:
    """The lab's network with node i at .(100+i) and a MAC ending in i."""
    base = ipaddress.IPv4Network(subnet).network_address
    return lab_network(
        lab,
        subnet,
        [DhcpHost(n, f"52:54:00:7e:57:{i:02x}", base + 100 + i) for i, n in enumerate(names, 1)],
    )


@pytest.fixture
def host() -> Iterator[LibvirtHost]:
    with LibvirtHost.open(TEST_URI) as h:
        yield h


@pytest.fixture
def lab(host: LibvirtHost) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        host.remove_lab(name, POOL)


def define_node(host: LibvirtHost, lab: str, node: str, *, console: Path) -> str:
    """A domain shaped like vagrant-libvirt's: a pool volume named after it, a file serial."""
    name = domain_name(lab, node)
    pool = host.connection.storagePoolLookupByName(POOL)
    volume = pool.createXML(
        f"<volume><name>{name}.img</name><capacity>1048576</capacity></volume>", 0
    )
    host.connection.defineXML(
        f"""<domain type='test'>
  <name>{name}</name>
  <memory>65536</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='{volume.path()}'/><target dev='vda'/></disk>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
  </devices>
</domain>"""
    )
    return name


def test_network_is_created_once_and_found(host: LibvirtHost, lab: str) -> None:
    spec = lab_net(lab, "10.200.1.0/24", ["core-01", "core-02"])
    assert host.ensure_network(spec) is True
    assert host.ensure_network(spec) is False
    assert host.find_network(spec.name) == spec
    assert host.connection.networkLookupByName(spec.name).isActive()


def test_mismatching_network_is_a_clear_error(host: LibvirtHost, lab: str) -> None:
    host.ensure_network(lab_net(lab, "10.200.2.0/24", ["core-01"]))
    with pytest.raises(HostError) as failure:
        host.ensure_network(lab_net(lab, "10.200.2.0/24", ["core-01", "core-02"]))
    assert "exists but differs: missing DHCP reservation core-02" in str(failure.value)
    assert "virsh net-undefine" in (failure.value.hint or "")


def test_overlapping_subnet_of_another_network_is_refused(host: LibvirtHost, lab: str) -> None:
    host.ensure_network(lab_net(lab, "10.200.3.0/24", ["core-01"]))
    other = f"{lab}x"
    try:
        with pytest.raises(HostError, match=f"network lab-{lab} already uses 10.200.3.0/24"):
            host.ensure_network(lab_net(other, "10.200.3.0/25", ["core-01"]))
        assert host.find_network(f"lab-{other}") is None
    finally:
        host.remove_lab(other, POOL)


def test_inactive_network_is_started(host: LibvirtHost, lab: str) -> None:
    spec = lab_net(lab, "10.200.4.0/24", ["core-01"])
    host.ensure_network(spec)
    host.connection.networkLookupByName(spec.name).destroy()
    assert host.ensure_network(spec) is False
    assert host.connection.networkLookupByName(spec.name).isActive()


def test_remove_network(host: LibvirtHost, lab: str) -> None:
    spec = lab_net(lab, "10.200.5.0/24", ["core-01"])
    host.ensure_network(spec)
    assert host.remove_network(spec.name) is True
    assert host.find_network(spec.name) is None
    assert host.remove_network(spec.name) is False


def test_domain_power_cycle(host: LibvirtHost, lab: str, tmp_path: Path) -> None:
    name = define_node(host, lab, "core-01", console=tmp_path / "core-01.log")
    assert host.state(name) is DomainState.SHUTOFF
    host.start(name)
    host.start(name)  # already running: nothing to do
    assert host.state(name) is DomainState.RUNNING
    host.shutdown(name, timeout=10)
    assert host.state(name) is DomainState.SHUTOFF
    host.start(name)
    host.power_off(name)
    host.power_off(name)  # already off: nothing to do
    assert host.state(name) is DomainState.SHUTOFF
    assert host.console_log_path(name) == tmp_path / "core-01.log"


def test_unknown_domain_is_a_node_error(host: LibvirtHost, lab: str) -> None:
    with pytest.raises(NodeError, match="no such libvirt domain"):
        host.state(domain_name(lab, "core-09"))


def test_lab_objects_are_found_by_prefix_only(host: LibvirtHost, lab: str, tmp_path: Path) -> None:
    a = define_node(host, lab, "core-01", console=tmp_path / "a.log")
    b = define_node(host, lab, "core-02", console=tmp_path / "b.log")
    neighbour = f"{lab}-b"  # a lab whose name extends ours
    try:
        define_node(host, neighbour, "core-01", console=tmp_path / "n.log")
        host.ensure_network(lab_net(lab, "10.200.6.0/24", ["core-01", "core-02"]))
        found = host.lab_objects(lab, POOL)
        assert found == LabObjects(
            domains=(a, b), volumes=(f"{a}.img", f"{b}.img"), networks=(f"lab-{lab}",)
        )
    finally:
        host.remove_lab(neighbour, POOL)


def test_undefine_removes_only_the_domains_own_volumes(
    host: LibvirtHost, lab: str, tmp_path: Path
) -> None:
    name = define_node(host, lab, "core-01", console=tmp_path / "c.log")
    pool = host.connection.storagePoolLookupByName(POOL)
    shared = pool.createXML(
        f"<volume><name>{lab}-box.img</name><capacity>1048576</capacity></volume>", 0
    )
    try:
        dom = host.connection.lookupByName(name)
        xml = dom.XMLDesc(0).replace(
            "</devices>",
            f"<disk type='file' device='disk'><source file='{shared.path()}'/>"
            "<target dev='vdb'/></disk></devices>",
        )
        host.connection.defineXML(xml)
        host.start(name)
        assert host.undefine(name) == (f"{name}.img",)
        assert host.lab_objects(lab, POOL).empty
        assert f"{lab}-box.img" in pool.listVolumes()
    finally:
        shared.delete(0)


def test_remove_lab_takes_everything(host: LibvirtHost, lab: str, tmp_path: Path) -> None:
    define_node(host, lab, "core-01", console=tmp_path / "d.log")
    host.start(domain_name(lab, "core-01"))
    pool = host.connection.storagePoolLookupByName(POOL)
    pool.createXML(
        f"<volume><name>{object_prefix(lab)}orphan.img</name><capacity>1024</capacity></volume>", 0
    )
    host.ensure_network(lab_net(lab, "10.200.7.0/24", ["core-01"]))
    removed = host.remove_lab(lab, POOL)
    assert removed.domains == (domain_name(lab, "core-01"),)
    assert removed.volumes == (
        f"{object_prefix(lab)}core-01.img",
        f"{object_prefix(lab)}orphan.img",
    )
    assert removed.networks == (f"lab-{lab}",)
    assert host.lab_objects(lab, POOL).empty


def test_storage_pool_is_defined_started_and_autostarted(host: LibvirtHost, tmp_path: Path) -> None:
    name = f"pool{uuid.uuid4().hex[:8]}"
    images = tmp_path / "images"
    with pytest.raises(HostError, match=f"storage pool '{name}' is missing"):
        ensure_storage_pool(host.connection, name, images, create=False)
    try:
        first = ensure_storage_pool(host.connection, name, images)
        assert (first.created, first.started, first.path) == (True, True, images)
        pool = host.connection.storagePoolLookupByName(name)
        assert pool.isActive()
        assert pool.autostart()
        assert not ensure_storage_pool(host.connection, name, images, create=False).changed
        pool.destroy()
        with pytest.raises(HostError, match="is not running"):
            ensure_storage_pool(host.connection, name, images, create=False)
        again = ensure_storage_pool(host.connection, name, tmp_path / "ignored")
        assert (again.created, again.started, again.path) == (False, True, images)
        assert pool.isActive()
    finally:
        pool = host.connection.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()

"""The floor: its domain XML, and etcd's HTTP answers its probes read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks.floor import FloorGuest, render_domain_xml
from provisioner.accel import AccelChoice
from provisioner.hypervisor.libvirt import parse_console_log_path, parse_disk_paths
from provisioner.parsers import parse_etcd_health, parse_started_members

pytestmark = pytest.mark.unit


# --- etcd over HTTP: bodies as etcd 3.4.23 returns them --------------------------

HEALTHY = '{"health":"true"}'
UNHEALTHY = '{"health":"false"}'
MEMBERS = (
    '{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709",'
    '"raft_term":"2"},"members":[{"ID":"13668033151171901709","name":"core-01",'
    '"peerURLs":["http://192.168.200.101:2380"],"clientURLs":["http://192.168.200.101:2379"]},'
    '{"ID":"2","name":"core-02","peerURLs":["http://192.168.200.102:2380"],'
    '"clientURLs":["http://192.168.200.102:2379"]},'
    '{"ID":"3","peerURLs":["http://192.168.200.103:2380"]}]}'
)


def test_health_answers() -> None:
    assert parse_etcd_health(HEALTHY)
    assert not parse_etcd_health(UNHEALTHY)
    assert not parse_etcd_health("404 page not found\n")
    assert not parse_etcd_health("[]")


def test_members_that_have_not_started_have_no_name() -> None:
    assert parse_started_members(MEMBERS) == ("core-01", "core-02")
    assert parse_started_members("not json") == ()
    assert parse_started_members('{"header":{}}') == ()


# --- the floor's domain XML -----------------------------------------------------------


def guest(tmp: Path) -> FloorGuest:
    return FloorGuest(
        domain="bench-floor-abc123-core-01",
        hostname="core-01",
        ip="192.168.201.101",
        mac="52:54:00:12:34:01",
        memory_mib=768,
        cpus=1,
        disk=tmp / "core-01.qcow2",
        config_drive=tmp / "core-01-config-2.iso",
        console_log=tmp / "core-01-console.log",
        network="bench-floor-abc123",
    )


def attribute(root: ET.Element, path: str, name: str) -> str | None:
    element = root.find(path)
    assert element is not None, path
    return element.get(name)


def test_domain_xml_under_tcg(tmp_path: Path) -> None:
    spec = guest(tmp_path)
    xml = render_domain_xml(spec, AccelChoice("tcg", "no vmx/svm"))
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == spec.domain
    assert root.findtext("memory") == "768"
    assert attribute(root, "memory", "unit") == "MiB"
    assert root.findtext("cpu/model") == "qemu64"
    assert attribute(root, "devices/interface/mac", "address") == spec.mac
    assert attribute(root, "devices/interface/source", "network") == spec.network
    assert root.find("devices/disk[@device='cdrom']/readonly") is not None
    cdrom_source = attribute(root, "devices/disk[@device='cdrom']/source", "file")
    assert cdrom_source == str(spec.config_drive)
    # The project's own readers of domain XML find the console log and the overlay.
    assert parse_console_log_path(xml) == spec.console_log
    assert parse_disk_paths(xml) == (spec.disk,)


def test_domain_xml_with_hardware_virtualisation(tmp_path: Path) -> None:
    root = ET.fromstring(render_domain_xml(guest(tmp_path), AccelChoice("kvm", "vmx")))
    assert root.get("type") == "kvm"
    cpu = root.find("cpu")
    assert cpu is not None
    assert cpu.get("mode") == "host-passthrough"
    assert cpu.find("model") is None
